"""Whole ServiceLevelObjectives, status included, read one by one: the pipeline gate's only request (`get`)."""

from __future__ import annotations

from functools import partial
from typing import Any

from kubernetes.client import CustomObjectsApi

from slo_guard.adapters.kubernetes_api import KubernetesApi, ObjectNotFound
from slo_guard.domain.model import GROUP, PLURAL, VERSION


class SLOObjects:
    """The gate's SLOReader, through the shared KubernetesApi (timeouts, retries, breaker)."""

    def __init__(self, api: KubernetesApi) -> None:
        self._api = api
        self._custom = CustomObjectsApi(api.client)

    async def read(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """None when the SLO (or its namespace, or the CRD) does not exist; KubernetesUnavailable otherwise."""
        call = partial(self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        try:
            resource: dict[str, Any] = await self._api.request("get", call)
        except ObjectNotFound:
            return None
        return resource
