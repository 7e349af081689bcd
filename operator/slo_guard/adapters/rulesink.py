"""Where the managed recording rules go: a rule file plus a reload request, or PrometheusRule objects.

A rule file suits a Prometheus next to the operator (the demo, the benchmark, a VM); with prometheus-operator,
each SLO gets its own PrometheusRule in its namespace, which keeps every object far below the API server's size
limit at any number of SLOs and lets the prometheus-operator's `ruleNamespaceSelector` decide what loads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import requests
from kubernetes.client import CustomObjectsApi

from slo_guard.adapters.kubernetes_api import MERGE_PATCH, KubernetesApi, ObjectNotFound
from slo_guard.adapters.prometheus import BearerTokenFileAuth, PrometheusSettings
from slo_guard.adapters.resilience import Bulkhead, CircuitBreaker, Remote, RetryPolicy
from slo_guard.service.ports import KubernetesUnavailable, WorkloadConflict

BREAKER_NAME = "prometheus-reload"


class RuleSinkError(Exception):
    """The rules could not be written or Prometheus did not reload them."""


class ReloadTimedOut(RuleSinkError):
    """Prometheus did not answer the reload in time; it is most likely still rereading every rule file."""


@dataclass(frozen=True, slots=True)
class RuleFileSettings:
    path: Path
    """The rule file; Prometheus's `rule_files` must include it."""
    reload_url: str | None
    """POSTed after each write (Prometheus's `/-/reload`, which needs --web.enable-lifecycle); None: no reload."""
    reload_timeout: float = 120.0
    """Prometheus answers a reload once it has reread every rule file: tens of seconds at thousands of SLOs."""


class FileRuleSink:
    """Writes the rule file atomically, only when its text changed, then asks Prometheus to reload it."""

    def __init__(self, settings: RuleFileSettings, prometheus: PrometheusSettings) -> None:
        self._settings = settings
        self._prometheus = prometheus
        self._written: str | None = None
        self._session = requests.Session()
        self._session.verify = _verify(prometheus)
        if prometheus.bearer_token_file is not None:
            self._session.auth = BearerTokenFileAuth(prometheus.bearer_token_file)
        # One reload at a time: each one rereads every rule file Prometheus has.
        self._reloads = Remote(
            bulkhead=Bulkhead(1, thread_name_prefix="slo-guard-reload"),
            breaker=CircuitBreaker(
                BREAKER_NAME,
                failure_threshold=prometheus.breaker_failure_threshold,
                reset_timeout=prometheus.breaker_reset_timeout,
            ),
            policy=RetryPolicy(
                attempts=prometheus.retries + 1, base_delay=prometheus.backoff_base, max_delay=prometheus.backoff_max
            ),
            # A timed-out reload is still running: a retry would queue a second full reread behind it.
            retryable=lambda error: isinstance(error, RuleSinkError) and not isinstance(error, ReloadTimedOut),
        )

    async def write(self, rules: Mapping[str, str]) -> None:
        # JSON is YAML, and far lighter than a YAML dump for thousands of rules; a digest is all we keep.
        text = '{"groups":[' + ",".join(filter(None, (_inside_array(groups) for groups in rules.values()))) + "]}"
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._written:
            return
        await asyncio.to_thread(_replace_file, self._settings.path, text)
        if self._settings.reload_url is not None:
            await self._reloads.call(self._reload)
        self._written = digest

    def close(self) -> None:
        self._reloads.bulkhead.close()
        self._session.close()

    def _reload(self) -> None:
        url = self._settings.reload_url
        assert url is not None
        try:
            response = self._session.post(url, timeout=self._settings.reload_timeout)
        except requests.Timeout as error:
            raise ReloadTimedOut(
                f"reloading Prometheus at {url} took longer than {self._settings.reload_timeout:g} s"
            ) from error
        except requests.RequestException as error:
            raise RuleSinkError(f"reloading Prometheus at {url} failed: {error}") from error
        if response.status_code != 200:
            raise RuleSinkError(f"reloading Prometheus at {url} answered {response.status_code}: {response.text[:200]}")


def _inside_array(text: str) -> str:
    """The elements of a JSON array, as text: the groups of every SLO are joined without decoding them."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        raise ValueError(f"expected a JSON array of rule groups, got {stripped[:40]!r}")
    return stripped[1:-1].strip()


def _replace_file(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _verify(settings: PrometheusSettings) -> bool | str:
    if settings.insecure_skip_verify:
        return False
    return str(settings.ca_file) if settings.ca_file is not None else True


PROMETHEUS_RULE_GROUP = "monitoring.coreos.com"
PROMETHEUS_RULE_VERSION = "v1"
PROMETHEUS_RULE_PLURAL = "prometheusrules"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


class PrometheusRuleSink:
    """One PrometheusRule per SLO, named `sloguard-<slo>` in the SLO's namespace; deleted with the SLO's rules."""

    def __init__(self, api: KubernetesApi, *, labels: Mapping[str, str]) -> None:
        self._api = api
        self._custom = CustomObjectsApi(api.client)
        self._labels = dict(labels)
        self._written: dict[str, str] = {}

    async def write(self, rules: Mapping[str, str]) -> None:
        for key in [key for key in self._written if key not in rules]:
            await self._delete(key)
            del self._written[key]
        for key, groups in rules.items():
            if self._written.get(key) != groups:
                await self._apply(key, json.loads(groups))
                self._written[key] = groups

    async def _apply(self, key: str, groups: list[dict[str, Any]]) -> None:
        namespace, name = _split(key)
        labels = {**self._labels, MANAGED_BY_LABEL: "slo-guard"}
        spec = {"groups": groups}
        body = {
            "apiVersion": f"{PROMETHEUS_RULE_GROUP}/{PROMETHEUS_RULE_VERSION}",
            "kind": "PrometheusRule",
            "metadata": {"name": rule_object_name(name), "namespace": namespace, "labels": labels},
            "spec": spec,
        }
        patch = partial(
            self._custom.patch_namespaced_custom_object,
            *_where(namespace),
            rule_object_name(name),
            {"metadata": {"labels": labels}, "spec": spec},
            _content_type=MERGE_PATCH,
        )
        try:
            await self._api.request("patch", patch, write=True)
        except ObjectNotFound:
            create = partial(self._custom.create_namespaced_custom_object, *_where(namespace), body)
            await self._api.request("create", create, write=True)
        except (KubernetesUnavailable, WorkloadConflict) as error:
            raise RuleSinkError(f"PrometheusRule for {key}: {error}") from error

    async def _delete(self, key: str) -> None:
        namespace, name = _split(key)
        delete = partial(self._custom.delete_namespaced_custom_object, *_where(namespace), rule_object_name(name))
        try:
            await self._api.request("delete", delete, write=True)
        except ObjectNotFound:
            return
        except (KubernetesUnavailable, WorkloadConflict) as error:
            raise RuleSinkError(f"deleting the PrometheusRule of {key}: {error}") from error


def rule_object_name(slo: str) -> str:
    return f"sloguard-{slo}"[:253]


def _where(namespace: str) -> tuple[str, str, str, str]:
    return (PROMETHEUS_RULE_GROUP, PROMETHEUS_RULE_VERSION, namespace, PROMETHEUS_RULE_PLURAL)


def _split(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name
