"""`kubectl get` Table responses (meta.k8s.io/v1 Table) built from printer columns."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from tests.support.emulator_resources import Body, PrinterColumn, ResourceType
from tests.support.emulator_selectors import jsonpath

_NAME_COLUMN = PrinterColumn(name="Name", type="string", json_path=".metadata.name", description="Name")
_AGE_COLUMN = PrinterColumn(
    name="Age", type="date", json_path=".metadata.creationTimestamp", description="Creation time"
)
_DURATION_UNITS = (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def wants_table(accept: str) -> bool:
    """Whether the client asked for a Table (kubectl get does, with a JSON fallback)."""
    return "as=Table" in accept


def _two_units(seconds: int, big: int, small: int) -> str:
    names = {size: name for name, size in _DURATION_UNITS}
    rest = (seconds % big) // small
    return f"{seconds // big}{names[big]}" + (f"{rest}{names[small]}" if rest else "")


def human_duration(seconds: int) -> str:
    """The API server's duration.HumanDuration (the AGE column format)."""
    hours, days = seconds // 3600, seconds // 86400
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 600:
        return _two_units(seconds, 60, 1)
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if hours < 8:
        return _two_units(seconds, 3600, 60)
    if hours < 48:
        return f"{hours}h"
    if hours < 8 * 24:
        return _two_units(seconds, 86400, 3600)
    if days < 2 * 365:
        return f"{days}d"
    if days < 8 * 365:
        return _two_units(seconds, 365 * 86400, 86400)
    return f"{days // 365}y"


def _age(timestamp: Any, now: datetime.datetime) -> str | None:
    if not isinstance(timestamp, str):
        return None
    created = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration(int((now - created).total_seconds()))


def _cell(obj: Body, column: PrinterColumn, now: datetime.datetime) -> Any:
    values = jsonpath(obj, column.json_path)
    if not values:
        return None
    if column.type == "date":
        return _age(values[0], now)
    return values[0]


def _columns(resource_type: ResourceType) -> list[PrinterColumn]:
    return [_NAME_COLUMN, *(resource_type.printer_columns or (_AGE_COLUMN,))]


def _partial_metadata(obj: Body) -> Body:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def to_table(
    resource_type: ResourceType, objects: Sequence[Body], *, now: datetime.datetime, resource_version: str
) -> Body:
    """A Table with one row per object; rows carry PartialObjectMetadata like the real server's default."""
    columns = _columns(resource_type)
    definitions = [
        {
            "name": column.name,
            "type": "string" if column.type == "date" else column.type,
            "format": "name" if column is _NAME_COLUMN else "",
            "description": column.description,
            "priority": column.priority,
        }
        for column in columns
    ]
    rows = [
        {"cells": [_cell(obj, column, now) for column in columns], "object": _partial_metadata(obj)} for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
