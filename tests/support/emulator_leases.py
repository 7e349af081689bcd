"""coordination.k8s.io/v1 Leases as kube-apiserver 1.32 decodes, prepares and validates them.

`decode_lease` is what decoding a request body into the typed v1.Lease does before anything else: values of the wrong
JSON type and MicroTimes that are not RFC3339Micro fail with the Go decoder's words, nulls and unknown fields drop,
and MicroTimes are stored in UTC with six fractional digits. `lease_strategy` is the Lease registry strategy: the
coordinated-leader-election fields drop (their feature gate is off by default in 1.32), then the name and the spec
are validated as pkg/apis/coordination/validation does (422).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from tests.support.emulator_resources import Body, ResourceType
from tests.support.emulator_store import DecodeError, invalid

RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_INT32_RANGE = (-(2**31), 2**31 - 1)
_SPEC_TYPES = {
    "holderIdentity": "string",
    "leaseDurationSeconds": "int32",
    "acquireTime": "MicroTime",
    "renewTime": "MicroTime",
    "leaseTransitions": "int32",
    "strategy": "string",
    "preferredHolder": "string",
}
_GATED_SPEC_FIELDS = ("strategy", "preferredHolder")
_OBJECT_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_SUBDOMAIN_ERROR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    f"and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{_DNS_SUBDOMAIN}')"
)
# RFC3339Micro as Go's time.Parse walks it: (literal prefix, element); an element takes a fixed count of digits.
_LAYOUT = (("", "2006"), ("-", "01"), ("-", "02"), ("T", "15"), (":", "04"), (":", "05"), ("", ".000000"))
# Checked while parsing; the day is checked against its month once the whole text has parsed, as Go does.
_RANGES = {"01": ("month", 1, 12), "15": ("hour", 0, 23), "04": ("minute", 0, 59), "05": ("second", 0, 59)}
_DIGITS = re.compile(r"[0-9]+")


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json_kind(value: Any) -> str:
    """How Go's decoder names a JSON value it cannot store."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _type_error(value: str, go_type: str, struct: str, field: str) -> DecodeError:
    return DecodeError(f"json: cannot unmarshal {value} into Go struct field {struct}.{field} of type {go_type}")


class _TimeError(Exception):
    def __init__(self, text: str, detail: str) -> None:
        super().__init__(f"parsing time {_go_quote(text)}{detail}")


def _cannot_parse(text: str, rest: str, element: str) -> _TimeError:
    return _TimeError(text, f" as {_go_quote(RFC3339_MICRO)}: cannot parse {_go_quote(rest)} as {_go_quote(element)}")


def _take_digits(text: str, rest: str, element: str) -> tuple[int, str]:
    width = len(element)
    if element == "15" and _DIGITS.match(rest[:1]) and not _DIGITS.match(rest[1:2]):
        width = 1  # Go's hour element takes one digit when only one is there
    if not _DIGITS.fullmatch(rest[:width]) or len(rest) < width:
        raise _cannot_parse(text, rest, element)
    return int(rest[:width]), rest[width:]


def _fraction(text: str, rest: str) -> tuple[int, str]:
    if len(rest) < 7 or rest[0] not in ".," or not _DIGITS.fullmatch(rest[1:7]):
        raise _cannot_parse(text, rest, ".000000")
    return int(rest[1:7]), rest[7:]


def _zone(text: str, rest: str) -> tuple[int, str]:
    """Offset in minutes east of UTC, for `Z` or `±hh:mm`."""
    if rest.startswith("Z"):
        return 0, rest[1:]
    if len(rest) < 6 or rest[0] not in "+-" or rest[3] != ":" or not _DIGITS.fullmatch(rest[1:3] + rest[4:6]):
        raise _cannot_parse(text, rest, "Z07:00")
    hours, minutes = int(rest[1:3]), int(rest[4:6])
    if hours > 24 or minutes > 60:
        part = "hour" if hours > 24 else "minute"
        raise _TimeError(text, f": time zone offset {part} out of range")
    sign = -1 if rest[0] == "-" else 1
    return sign * (hours * 60 + minutes), rest[6:]


def micro_time(text: str) -> str:
    """A MicroTime as stored: parsed like Go's time.Parse(RFC3339Micro, text), written back in UTC."""
    rest, fields = text, {}
    for prefix, element in _LAYOUT:
        if not rest.startswith(prefix):
            raise _cannot_parse(text, rest, prefix)
        rest = rest[len(prefix) :]
        value, rest = _fraction(text, rest) if element == ".000000" else _take_digits(text, rest, element)
        name, low, high = _RANGES.get(element, ("", value, value))
        if not low <= value <= high:
            raise _TimeError(text, f": {name} out of range")
        fields[element] = value
    offset, rest = _zone(text, rest)
    if rest:
        raise _TimeError(text, f": extra text: {_go_quote(rest)}")
    try:
        local = datetime.datetime(fields["2006"], fields["01"], fields["02"], fields["15"], fields["04"], fields["05"])
    except ValueError:
        raise _TimeError(text, ": day out of range") from None
    moment = local - datetime.timedelta(minutes=offset)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fields['.000000']:06d}Z"


def _spec_value(field: str, value: Any) -> Any:
    go_type, path = _SPEC_TYPES[field], f"spec.{field}"
    if go_type == "int32":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(_json_kind(value), go_type, "LeaseSpec", path)
        if isinstance(value, float) or not _INT32_RANGE[0] <= value <= _INT32_RANGE[1]:
            raise _type_error(f"number {value}", go_type, "LeaseSpec", path)
        return value
    if not isinstance(value, str):  # a MicroTime decodes a string first: the same error, in the field's context
        raise _type_error(_json_kind(value), "string", "LeaseSpec", path)
    if go_type == "MicroTime":
        try:
            return micro_time(value)
        except _TimeError as exc:
            raise DecodeError(str(exc)) from None
    return value


def decode_lease(body: Body) -> tuple[Body, list[str]]:
    """The Lease a request body decodes into, and the unknown fields dropped (in the order met); DecodeError when the
    body cannot decode."""
    decoded: Body = {"spec": {}}  # a struct, not a pointer: a Lease always has a spec, if only {}
    unknown = []
    for key, value in body.items():
        if key not in _OBJECT_FIELDS:
            unknown.append(key)
        elif key != "spec":
            decoded[key] = value
        elif value is not None and not isinstance(value, dict):
            raise _type_error(_json_kind(value), "v1.LeaseSpec", "Lease", "spec")
        else:
            decoded["spec"], dropped = _decode_spec(value or {})
            unknown += dropped
    return decoded, unknown


def _decode_spec(spec: Body) -> tuple[Body, list[str]]:
    decoded, unknown = {}, []
    for field, value in spec.items():
        if field not in _SPEC_TYPES:
            unknown.append(f"spec.{field}")
        elif value is not None:
            decoded[field] = _spec_value(field, value)
    return decoded, unknown


def lease_strategy(resource_type: ResourceType, obj: Body) -> Body:
    """The Lease strategy: drop the feature-gated fields, then refuse an invalid name or spec (422)."""
    spec = obj["spec"]
    for field in _GATED_SPEC_FIELDS:
        spec.pop(field, None)
    name = obj["metadata"]["name"]
    causes = []
    if len(name) > 253:
        causes.append(("metadata.name", f"Invalid value: {_go_quote(name)}: must be no more than 253 characters"))
    if not re.fullmatch(_DNS_SUBDOMAIN, name):
        causes.append(("metadata.name", f"Invalid value: {_go_quote(name)}: {_SUBDOMAIN_ERROR}"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        causes.append(("spec.leaseDurationSeconds", f"Invalid value: {duration}: must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        causes.append(("spec.leaseTransitions", f"Invalid value: {transitions}: must be greater than or equal to 0"))
    if causes:
        raise invalid(resource_type, name, *causes)
    return obj
