"""Where the managed recording rules go: a rule file Prometheus reads, followed by a reload request."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from slo_guard.adapters.prometheus import BearerTokenFileAuth, PrometheusSettings
from slo_guard.adapters.resilience import CircuitBreaker, RetryPolicy, retry

BREAKER_NAME = "prometheus-reload"


class RuleSinkError(Exception):
    """The rules could not be written or Prometheus did not reload them."""


@dataclass(frozen=True, slots=True)
class RuleFileSettings:
    path: Path
    """The rule file; Prometheus's `rule_files` must include it."""
    reload_url: str | None
    """POSTed after each write (Prometheus's `/-/reload`, which needs --web.enable-lifecycle); None: no reload."""


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
        self._retry_policy = RetryPolicy(
            attempts=prometheus.retries + 1, base_delay=prometheus.backoff_base, max_delay=prometheus.backoff_max
        )
        self._breaker = CircuitBreaker(
            BREAKER_NAME,
            failure_threshold=prometheus.breaker_failure_threshold,
            reset_timeout=prometheus.breaker_reset_timeout,
        )

    async def write(self, document: Mapping[str, Any]) -> None:
        text = yaml.safe_dump(dict(document), sort_keys=False, width=1_000_000)
        if text == self._written:
            return
        await asyncio.to_thread(_replace_file, self._settings.path, text)
        if self._settings.reload_url is not None:
            await retry(
                lambda: self._breaker.call(lambda: asyncio.to_thread(self._reload)),
                policy=self._retry_policy,
                retryable=lambda error: isinstance(error, RuleSinkError),
            )
        self._written = text

    def close(self) -> None:
        self._session.close()

    def _reload(self) -> None:
        url = self._settings.reload_url
        assert url is not None
        try:
            response = self._session.post(url, timeout=self._prometheus.timeout)
        except requests.RequestException as error:
            raise RuleSinkError(f"reloading Prometheus at {url} failed: {error}") from error
        if response.status_code != 200:
            raise RuleSinkError(f"reloading Prometheus at {url} answered {response.status_code}: {response.text[:200]}")


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
