"""Who last set a field, from the managedFields the API server keeps on every object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELD_MANAGER = "slo-guard"
"""The fieldManager of slo-guard's target writes, so managedFields tell them from a GitOps tool's or a human's."""


def field_owner(managed_fields: Any, path: str) -> str | None:
    """The manager that last took the field at `path` (e.g. `spec.paused`) over; slo-guard itself and unknowns are None.

    An update that changes a field moves its ownership to the writer's manager (its fieldManager, by default the
    start of its user agent), so right after a revert the owner is whoever reverted it.
    """
    owners = []
    for entry in managed_fields if isinstance(managed_fields, list) else []:
        if not isinstance(entry, Mapping):
            continue
        manager = entry.get("manager")
        if _owns(entry.get("fieldsV1"), path) and manager and manager != FIELD_MANAGER:
            owners.append((str(entry.get("time") or ""), str(manager)))
    return max(owners)[1] if owners else None


def _owns(fields: Any, path: str) -> bool:
    """Whether a fieldsV1 set (`{"f:spec": {"f:paused": {}}}`) holds the field at the dotted `path`."""
    for name in path.split("."):
        if not isinstance(fields, Mapping) or f"f:{name}" not in fields:
            return False
        fields = fields[f"f:{name}"]
    return True
