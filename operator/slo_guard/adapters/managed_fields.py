"""Who last set a field, from the managedFields the API server keeps on every object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELD_MANAGER = "slo-guard"
"""The fieldManager of slo-guard's target writes, so managedFields tell them from a GitOps tool's or a human's."""


def field_owner(managed_fields: Any, field: str) -> str | None:
    """The manager that last took `spec.<field>` over, from managedFields; slo-guard itself and unknowns are None.

    An update that changes a field moves its ownership to the writer's manager (its fieldManager, by default the
    start of its user agent), so right after a revert the owner is whoever reverted it.
    """
    owners = []
    for entry in managed_fields if isinstance(managed_fields, list) else []:
        if not isinstance(entry, Mapping):
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec")
        manager = entry.get("manager")
        if isinstance(spec, Mapping) and f"f:{field}" in spec and manager and manager != FIELD_MANAGER:
            owners.append((str(entry.get("time") or ""), str(manager)))
    return max(owners)[1] if owners else None
