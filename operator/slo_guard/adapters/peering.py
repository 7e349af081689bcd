"""kopf's peering objects, read the way RBAC allows slo-guard to: by listing (kopf itself never gets one by name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slo_guard.adapters.kubernetes_api import KubernetesApi, list_custom_objects

PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"


async def peering_statuses(api: KubernetesApi, *, name: str, namespaces: Sequence[str]) -> list[Mapping[str, Any]]:
    """The `status` (peer identity -> keep-alive) of peering `name`: the cluster one, or one per namespace."""
    plural = "kopfpeerings" if namespaces else "clusterkopfpeerings"
    items = await list_custom_objects(
        api, group=PEERING_GROUP, version=PEERING_VERSION, plural=plural, namespaces=namespaces
    )
    return [item.get("status") or {} for item in items if (item.get("metadata") or {}).get("name") == name]
