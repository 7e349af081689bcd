"""SLO status writes: merge patches to the status subresource of ServiceLevelObjectives."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial

from kubernetes.client import CustomObjectsApi

from slo_guard.adapters.kubernetes_api import MERGE_PATCH, KubernetesApi, ObjectNotFound, list_custom_objects
from slo_guard.domain.model import GROUP, PLURAL, VERSION
from slo_guard.service.ports import KubernetesUnavailable, WorkloadConflict

logger = logging.getLogger("slo_guard.kubernetes")


async def list_slo_keys(api: KubernetesApi, *, namespaces: Sequence[str]) -> set[str]:
    """`namespace/name` of every ServiceLevelObjective in `namespaces` (all namespaces when empty)."""
    items = await list_custom_objects(api, group=GROUP, version=VERSION, plural=PLURAL, namespaces=namespaces)
    return {
        f"{(item.get('metadata') or {}).get('namespace')}/{(item.get('metadata') or {}).get('name')}" for item in items
    }


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
