"""Where `kubectl slo` meets the API server: a connection chosen as kubectl chooses it, its reads and its one write."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config
from kubernetes.client import CustomObjectsApi

from slo_guard import __version__
from slo_guard.adapters.kubernetes_api import (
    MERGE_PATCH,
    KubernetesApi,
    KubernetesSettings,
    NoCredentials,
    ObjectNotFound,
    kubeconfig_path,
    load_api_client,
)
from slo_guard.adapters.workloads import WorkloadKind
from slo_guard.domain.model import GROUP, PLURAL, VERSION
from slo_guard.service.ports import KubernetesUnavailable, WorkloadConflict

EXIT_ERROR = 1
"""What kubectl exits with when a request fails."""
FIELD_MANAGER = "kubectl-slo"
DEFAULT_NAMESPACE = "default"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
SETTINGS = KubernetesSettings(retries=2)
"""A person is waiting: fail within a second or two, not after the operator's patient retries."""
SLO_RESOURCE = f"{PLURAL}.{GROUP}"


class CommandError(Exception):
    """What went wrong, one line each (`error: ...` on stderr), and the exit code."""

    def __init__(self, *lines: str, code: int = EXIT_ERROR) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines
        self.code = code


@dataclass(frozen=True, slots=True)
class Cluster:
    api: KubernetesApi
    namespace: str
    """The namespace of the kubeconfig context (or of the pod's service account), else `default`."""

    async def list_slos(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every ServiceLevelObjective in `namespace`, or in every namespace for None."""
        custom = CustomObjectsApi(self.api.client)
        if namespace is None:
            call = partial(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        else:
            call = partial(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
        try:
            listing = await self._request("list", call)
        except ObjectNotFound:
            raise CommandError(f'the server doesn\'t have a resource type "{PLURAL}"') from None
        return list(listing.get("items") or [])

    async def get_slo(self, namespace: str, name: str) -> dict[str, Any]:
        custom = CustomObjectsApi(self.api.client)
        call = partial(custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        try:
            resource: dict[str, Any] = await self._request("get", call)
        except ObjectNotFound:
            raise await self._not_found(GROUP, VERSION, PLURAL, name) from None
        return resource

    async def annotate(
        self, kind: WorkloadKind, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> dict[str, Any]:
        """Set annotations on a workload with one merge patch, which only adds or replaces those keys."""
        custom = CustomObjectsApi(self.api.client)
        call = partial(
            custom.patch_namespaced_custom_object,
            kind.group,
            kind.version,
            namespace,
            kind.plural,
            name,
            {"metadata": {"annotations": dict(annotations)}},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )
        try:
            workload: dict[str, Any] = await self._request("patch", call, write=True)
        except ObjectNotFound:
            raise await self._not_found(kind.group, kind.version, kind.plural, name) from None
        return workload

    def close(self) -> None:
        self.api.close()

    async def _request(self, verb: str, call: partial[Any], *, write: bool = False) -> Any:
        try:
            return await self.api.request(verb, call, write=write)
        except (KubernetesUnavailable, WorkloadConflict) as error:
            raise CommandError(str(error)) from None

    async def _not_found(self, group: str, version: str, plural: str, name: str) -> CommandError:
        # The API server answers 404 both for a missing object and for a resource it does not serve.
        if not await self.api.serves(group=group, version=version, plural=plural):
            return CommandError(f'the server doesn\'t have a resource type "{plural}"')
        return CommandError(f'{plural}.{group} "{name}" not found')


def connect(context: str | None) -> Cluster:
    """Connect like kubectl: `KUBECONFIG` or ~/.kube/config (its current context, or `context`), else the pod's
    service account."""
    kubeconfig = kubeconfig_path()
    if any(Path(path).expanduser().exists() for path in kubeconfig.split(os.pathsep) if path):
        namespace = _context_namespace(kubeconfig, context)
    elif context is not None:
        raise CommandError(f'context "{context}" does not exist')
    else:
        namespace = _service_account_namespace()
    try:
        client = load_api_client(SETTINGS, context=context, user_agent=f"kubectl-slo/{__version__}")
    except NoCredentials as error:
        raise CommandError(str(error)) from None
    return Cluster(KubernetesApi(client, SETTINGS), namespace)


def _context_namespace(kubeconfig: str, context: str | None) -> str:
    contexts, current = kube_config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    if context is None:
        chosen = current
    else:
        chosen = next((item for item in contexts if item.get("name") == context), None)
        if chosen is None:
            raise CommandError(f'context "{context}" does not exist')
    return str((chosen.get("context") or {}).get("namespace") or DEFAULT_NAMESPACE)


def _service_account_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE
