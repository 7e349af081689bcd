"""What every importer shares: the options, reading untyped YAML with the field named, and the resource built."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from slo_guard.domain.model import API_VERSION, KIND

IMPORTED_FROM = "sloguard.io/imported-from"
"""Annotation naming the tool, file and document an imported SLO came from."""
MAX_DESCRIPTION = 1024
"""spec.description's limit; OpenSLO allows 1050 characters."""
_ECHO_LIMIT = 80

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_KEY = re.compile(r"(?:(?P<prefix>[^/]+)/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """A `--target KIND/NAME`, already checked."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class ImportOptions:
    namespace: str | None = None
    """Overrides the source's namespace."""
    targets: tuple[Target, ...] = ()
    """Given to every imported SLO; without any, the SLOs only report."""
    window: str = "30d"
    """For sources that state no window (Sloth never does)."""


@dataclass(frozen=True, slots=True)
class Source:
    """One file's YAML documents, parsed."""

    path: str
    documents: Sequence[object]


@dataclass(frozen=True, slots=True)
class Note:
    """One finding about one field of a source document; `field` is the path as written there."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class Refusal(Exception):
    """A construct that cannot map; the SLO holding it is not imported."""

    def __init__(self, field: str, message: str) -> None:
        self.note = Note(field, message)
        super().__init__(str(self.note))


@dataclass(slots=True)
class Draft:
    """One SLO of a source while it is mapped: every refusal is kept, so one run names them all."""

    where: str
    """`FILE: document N (name)`, the start of every line about it."""
    origin: str
    """The imported-from annotation's value."""
    refusals: list[Note] = field(default_factory=list)
    warnings: list[Note] = field(default_factory=list)

    def attempt(self, produce: Callable[[], T]) -> T | None:
        try:
            return produce()
        except Refusal as refusal:
            self.refusals.append(refusal.note)
            return None

    def refuse(self, field: str, message: str) -> None:
        self.refusals.append(Note(field, message))

    def warn(self, field: str, message: str) -> None:
        self.warnings.append(Note(field, message))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One SLO found in a source: its resource, or the reasons it has none."""

    where: str
    resource: dict[str, Any] | None
    refusals: tuple[Note, ...]
    warnings: tuple[Note, ...]


@dataclass(frozen=True, slots=True)
class Parts:
    """The mapped pieces of one SLO, each None where a refusal was recorded instead."""

    name: str | None
    namespace: str | None
    objective: float | None
    window: str | None
    indicator: dict[str, Any] | None
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None


def refused(draft: Draft) -> Outcome:
    return Outcome(draft.where, None, tuple(draft.refusals), tuple(draft.warnings))


def location(path: str, index: int, name: object) -> str:
    return f"{path}: document {index}" + (f" ({shown(name)})" if isinstance(name, str) and name else "")


def finish(draft: Draft, parts: Parts | None, options: ImportOptions) -> Outcome:
    """The ServiceLevelObjective, unless a refusal was recorded on the way."""
    if parts is None or draft.refusals or None in (parts.name, parts.objective, parts.window, parts.indicator):
        return refused(draft)
    metadata: dict[str, Any] = {"name": parts.name, "namespace": options.namespace or parts.namespace or "default"}
    if parts.labels:
        metadata["labels"] = dict(parts.labels)
    metadata["annotations"] = {IMPORTED_FROM: draft.origin}
    spec: dict[str, Any] = {}
    if parts.description:
        spec["description"] = parts.description
    spec |= {"objective": parts.objective, "window": parts.window, "indicator": parts.indicator}
    if options.targets:
        spec["targets"] = [{"kind": target.kind, "name": target.name} for target in options.targets]
    resource = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    return Outcome(draft.where, resource, (), tuple(draft.warnings))


def mapping(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise Refusal(field, f"must be a mapping (got {echo(value)})")
    return value


def sequence(value: object, field: str) -> Sequence[object]:
    if not isinstance(value, list):
        raise Refusal(field, f"must be a list (got {echo(value)})")
    return value


def text(value: object, field: str) -> str:
    if value is None:
        raise Refusal(field, "is required")
    if not isinstance(value, str) or not value.strip():
        raise Refusal(field, f"must be a non-empty string (got {echo(value)})")
    return value


def optional_text(value: object, field: str) -> str | None:
    return None if value is None or value == "" else text(value, field)


def percent(value: object, field: str, *, scale: int = 1) -> float:
    """A number of percent (or a fraction, with scale 100), strictly between 0 and 100 once scaled."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refusal(field, f"must be a number (got {echo(value)})")
    try:
        # Decimal keeps 0.9995 * 100 at 99.95, where floats give 99.94999999999999.
        scaled = Decimal(str(value).strip()) * scale
    except InvalidOperation:
        raise Refusal(field, f"must be a number (got {echo(value)})") from None
    if not scaled.is_finite() or not 0 < scaled < 100:
        bounds = "between 0 and 1" if scale == 100 else "between 0 and 100"
        raise Refusal(field, f"must be strictly {bounds}, so that some budget is left (got {echo(value)})")
    # Whole numbers stay whole, so the YAML says 99 as the source did, not 99.0.
    return int(scaled) if scaled == scaled.to_integral_value() else float(scaled)


def dns_name(value: str, field: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise Refusal(
            field,
            f"{value!r} cannot be a ServiceLevelObjective name: it must be a DNS subdomain (lowercase letters, "
            "digits, '-' and '.')",
        )
    return value


def namespace(value: object, field: str, draft: Draft, options: ImportOptions) -> str | None:
    """The source's namespace, unless --namespace overrides it; a refusal when it cannot be one."""
    if options.namespace is not None:
        return None
    named = draft.attempt(lambda: optional_text(value, field))
    if named is not None and (len(named) > 63 or not _DNS_LABEL.fullmatch(named)):
        draft.refuse(field, f"{named!r} is not a namespace name (a DNS label); give --namespace")
    return named


def kubernetes_labels(field: str, draft: Draft, *sources: object) -> dict[str, str]:
    """The sources' labels (later ones win) that are valid Kubernetes labels; the others are dropped with one
    warning, since they change no number."""
    merged: dict[object, object] = {}
    for labels in sources:
        if isinstance(labels, Mapping):
            merged |= labels
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in merged.items():
        if isinstance(key, str) and isinstance(value, str) and _is_label(key, value):
            kept[key] = value
        else:
            dropped.append(shown(str(key)))
    if dropped:
        draft.warn(field, f"not valid Kubernetes labels, left out: {', '.join(dropped)}")
    return kept


def _is_label(key: str, value: str) -> bool:
    match = _LABEL_KEY.fullmatch(key)
    if match is None or not _LABEL_VALUE.fullmatch(value):
        return False
    prefix = match.group("prefix")
    return prefix is None or (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix) is not None)


def description(value: object, field: str, draft: Draft) -> str | None:
    described = draft.attempt(lambda: optional_text(value, field))
    if described is not None and len(described) > MAX_DESCRIPTION:
        draft.warn(field, f"longer than {MAX_DESCRIPTION} characters, cut there")
        return described[: MAX_DESCRIPTION - 1] + "…"
    return described


def shown(name: str) -> str:
    """A name from a source as it reads, quoted only when it would break the one-line messages."""
    return name if name.isprintable() and len(name) <= _ECHO_LIMIT else echo(name)


def echo(value: object) -> str:
    written = repr(value)
    return written if len(written) <= _ECHO_LIMIT else written[: _ECHO_LIMIT - 3] + "..."
