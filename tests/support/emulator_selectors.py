"""Label selectors, field selectors and the JSONPath subset used by printer columns."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_REQUIREMENT = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^)]*)\)$")
_EQUALITY_REQUIREMENT = re.compile(rf"^({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)$")
_EXISTS_REQUIREMENT = re.compile(rf"^(!?)\s*({_KEY})$")
_FIELD_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)$")
_JSONPATH_SEGMENT = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-]+)"""
    r"""|\[(?P<index>\d+)\]"""
    r"""|\[(?P<all>\*)\]"""
    r"""|\[\?\(@\.(?P<filter_key>[A-Za-z0-9_.\-]+)\s*==\s*["'](?P<filter_value>[^"']*)["']\)\]"""
)


@dataclasses.dataclass(frozen=True)
class LabelRequirement:
    """One clause of a label selector."""

    key: str
    """The label key."""
    operator: str
    """One of =, !=, in, notin, exists, !exists."""
    values: frozenset[str] = frozenset()
    """The values compared with (one for = and !=)."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels satisfies the clause."""
        present = self.key in labels
        match self.operator:
            case "=" | "in":
                return present and labels[self.key] in self.values
            case "!=" | "notin":
                return not present or labels[self.key] not in self.values
            case "exists":
                return present
            case _:
                return not present


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    """One clause of a field selector."""

    field: str
    """Dotted path, e.g. metadata.name."""
    value: str
    """The value compared with."""
    negated: bool
    """True for !=."""

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object satisfies the clause (a missing field compares as "")."""
        actual = _dotted(obj, self.field)
        equal = ("" if actual is None else str(actual)) == self.value
        return equal != self.negated


def _split_clauses(text: str) -> list[str]:
    clauses: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            clauses.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    clauses.append("".join(current).strip())
    return [clause for clause in clauses if clause]


def _parse_label_clause(clause: str) -> LabelRequirement:
    if match := _SET_REQUIREMENT.match(clause):
        values = frozenset(value.strip() for value in match[3].split(",") if value.strip())
        return LabelRequirement(match[1], match[2], values)
    if match := _EQUALITY_REQUIREMENT.match(clause):
        operator = "!=" if match[2] == "!=" else "="
        return LabelRequirement(match[1], operator, frozenset({match[3]}))
    if match := _EXISTS_REQUIREMENT.match(clause):
        return LabelRequirement(match[2], "!exists" if match[1] else "exists")
    raise ValueError(f"unable to parse requirement: {clause!r}")


def parse_label_selector(text: str) -> tuple[LabelRequirement, ...]:
    """Parse `labelSelector=`; raises ValueError on syntax the API server would reject."""
    return tuple(_parse_label_clause(clause) for clause in _split_clauses(text))


def parse_field_selector(text: str, *, supported: frozenset[str]) -> tuple[FieldRequirement, ...]:
    """Parse `fieldSelector=`; raises ValueError for syntax errors and unsupported field labels."""
    requirements = []
    for clause in _split_clauses(text):
        match = _FIELD_REQUIREMENT.match(clause)
        if match is None:
            raise ValueError(f"invalid selector: {text!r}; can't understand {clause!r}")
        field, operator, value = match.groups()
        if field not in supported:
            raise ValueError(f'field label not supported: "{field}"')
        requirements.append(FieldRequirement(field, value, operator == "!="))
    return tuple(requirements)


def selector_matches(
    obj: Mapping[str, Any],
    *,
    labels: Sequence[LabelRequirement] = (),
    fields: Sequence[FieldRequirement] = (),
) -> bool:
    """Whether the object passes every label and field clause."""
    object_labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(req.matches(object_labels) for req in labels) and all(req.matches(obj) for req in fields)


_SELECTOR_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def label_selector_requirements(selector: Mapping[str, Any]) -> tuple[LabelRequirement, ...]:
    """A metav1.LabelSelector (matchLabels, matchExpressions) as requirements; empty selects everything."""
    requirements = [
        LabelRequirement(key, "=", frozenset({value})) for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        operator = _SELECTOR_OPERATORS[expression["operator"]]
        requirements.append(LabelRequirement(expression["key"], operator, frozenset(expression.get("values") or ())))
    return tuple(requirements)


def format_label_selector(selector: Mapping[str, Any]) -> str:
    """A metav1.LabelSelector as the string form used in `Scale.status.selector`."""
    clauses = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(sorted(expression.get("values") or []))
        clauses.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(operator, f"!{key}")
        )
    return ",".join(clauses)


def _dotted(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _step(values: list[Any], segment: re.Match[str]) -> list[Any]:
    if field := segment["field"]:
        return [value[field] for value in values if isinstance(value, Mapping) and field in value]
    lists = [value for value in values if isinstance(value, list)]
    if index := segment["index"]:
        return [value[int(index)] for value in lists if int(index) < len(value)]
    items = [item for value in lists for item in value]
    if segment["all"]:
        return items
    key, expected = segment["filter_key"], segment["filter_value"]
    return [item for item in items if isinstance(item, Mapping) and str(_dotted(item, key)) == expected]


def jsonpath(obj: Mapping[str, Any], path: str) -> list[Any]:
    """Evaluate the printer-column JSONPath subset: `.a.b`, `[0]`, `[*]`, `[?(@.k=="v")]`."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    values: list[Any] = [obj]
    position = 0
    while position < len(text):
        segment = _JSONPATH_SEGMENT.match(text, position)
        if segment is None:
            raise ValueError(f"unsupported JSONPath: {path!r}")
        values = _step(values, segment)
        position = segment.end()
    return values
