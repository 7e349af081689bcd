"""kopf's peering objects, read the way RBAC allows slo-guard to: by listing (kopf itself never gets one by name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from kubernetes.client import CustomObjectsApi

from slo_guard.adapters.kubernetes_api import KubernetesApi, ObjectNotFound

PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"


async def peering_statuses(api: KubernetesApi, *, name: str, namespaces: Sequence[str]) -> list[Mapping[str, Any]]:
    """The `status` (peer identity -> keep-alive) of peering `name`: the cluster one, or one per namespace."""
    custom = CustomObjectsApi(api.client)
    if namespaces:
        calls = [
            partial(custom.list_namespaced_custom_object, PEERING_GROUP, PEERING_VERSION, ns, "kopfpeerings")
            for ns in namespaces
        ]
    else:
        calls = [partial(custom.list_cluster_custom_object, PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings")]
    statuses = []
    for call in calls:
        try:
            listing = await api.request("list", call)
        except ObjectNotFound:
            continue
        for item in listing.get("items") or []:
            if (item.get("metadata") or {}).get("name") == name:
                statuses.append(item.get("status") or {})
    return statuses
