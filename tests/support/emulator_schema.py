"""CRD structural schemas as the API server applies them to custom resources: prune, default, validate.

CEL rules (`x-kubernetes-validations`) and `format` checks are not evaluated (docs/emulator.md).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonschema

_ROOT_KEYS = ("apiVersion", "kind", "metadata")
_NESTED = ("properties", "patternProperties")


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI v3.0 as JSON Schema draft 4: nullable and int-or-string spelled out, x-kubernetes-* dropped."""
    if not isinstance(schema, Mapping):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default"):
            continue
        if key in _NESTED:
            result[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            result[key] = _to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            result[key] = [_to_json_schema(sub) for sub in value]
        else:
            result[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}, *result.get("anyOf", [])]
    if schema.get("nullable") and "type" in result:
        result["type"] = [result["type"], "null"]
    return result


def _prune(schema: Mapping[str, Any], value: Any, *, path: str, dropped: list[str], keep: tuple[str, ...] = ()) -> Any:
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_prune(schema["items"], item, path=f"{path}[{i}]", dropped=dropped) for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = _ROOT_KEYS if schema.get("x-kubernetes-embedded-resource") else ()
    result = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key in keep or key in embedded:
            result[key] = item
        elif key in properties:
            result[key] = _prune(properties[key], item, path=where, dropped=dropped)
        elif isinstance(additional, Mapping):
            result[key] = _prune(additional, item, path=where, dropped=dropped)
        elif preserve or additional is True:
            result[key] = item
        else:
            dropped.append(where)
    return result


def _default(schema: Mapping[str, Any], value: Any) -> Any:
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_default(schema["items"], item) for item in value]
    if not isinstance(value, dict):
        return value
    result = dict(value)
    for key, sub in (schema.get("properties") or {}).items():
        if key not in result and "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
        if key in result:
            result[key] = _default(sub, result[key])
    additional = schema.get("additionalProperties")
    if isinstance(additional, Mapping):
        properties = schema.get("properties") or {}
        result = {k: v if k in properties else _default(additional, v) for k, v in result.items()}
    return result


def _field_path(path: Any) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".") or "<root>"


class StructuralSchema:
    """The `openAPIV3Schema` of one CRD version."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._validator = jsonschema.Draft4Validator(_to_json_schema(schema))

    def normalize(self, obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Prune unknown fields, then apply defaults, as the server does; also the paths of the pruned fields."""
        dropped: list[str] = []
        pruned = _prune(self.schema, obj, path="", dropped=dropped, keep=_ROOT_KEYS)
        defaulted: dict[str, Any] = _default(self.schema, pruned)
        return defaulted, dropped

    def errors(self, obj: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field path, message) for every schema violation, sorted by path."""
        found = [
            (_field_path(error.absolute_path), f"Invalid value: {json.dumps(error.instance)}: {error.message}")
            for error in self._validator.iter_errors(obj)
        ]
        return sorted(found)
