"""SLO status writes: merge patches to the status subresource of ServiceLevelObjectives."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial

from kubernetes.client import CustomObjectsApi

from slo_guard.adapters.kubernetes_api import MERGE_PATCH, KubernetesApi, ObjectNotFound
from slo_guard.domain.model import GROUP, PLURAL, VERSION
from slo_guard.service.ports import KubernetesUnavailable, WorkloadConflict

logger = logging.getLogger("slo_guard.kubernetes")


async def list_slo_keys(api: KubernetesApi, *, namespaces: Sequence[str]) -> set[str]:
    """`namespace/name` of every ServiceLevelObjective in `namespaces` (all namespaces when empty)."""
    custom = CustomObjectsApi(api.client)
    if namespaces:
        calls = [partial(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL) for ns in namespaces]
    else:
        calls = [partial(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)]
    keys = set()
    for call in calls:
        try:
            listing = await api.request("list", call)
        except ObjectNotFound:
            continue
        for item in listing.get("items") or []:
            metadata = item.get("metadata") or {}
            keys.add(f"{metadata.get('namespace')}/{metadata.get('name')}")
    return keys


class SLOStatusStore:
    """The StatusStore: merge patches to the status subresource of ServiceLevelObjectives."""

    def __init__(self, api: KubernetesApi) -> None:
        self._api = api
        self._custom = CustomObjectsApi(api.client)

    async def patch_status(self, *, namespace: str, name: str, status: Mapping[str, object]) -> None:
        """A deleted SLO is ignored; any other failure raises KubernetesUnavailable."""
        call = partial(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
            _content_type=MERGE_PATCH,
        )
        try:
            await self._api.request("patch", call, write=True)
        except ObjectNotFound:
            logger.debug("ServiceLevelObjective %s/%s is gone; status not written", namespace, name)
        except WorkloadConflict as error:
            raise KubernetesUnavailable(f"status of ServiceLevelObjective {namespace}/{name}: {error}") from error
