"""Wiring for `slo-guard run`: builds the services once per process and runs each SLO's evaluation loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from slo_guard.adapters.kubernetes import (
    DeploymentWorkloads,
    KubernetesApi,
    KubernetesEvents,
    KubernetesSettings,
    KubernetesUnavailable,
    SLOStatusStore,
    load_api_client,
)
from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.adapters.rulesink import FileRuleSink, PrometheusRuleSink, RuleFileSettings
from slo_guard.domain.durations import DurationError, parse_duration
from slo_guard.handlers.probes import ProbeServer
from slo_guard.resources import (
    MAX_EVALUATION_INTERVAL,
    MIN_EVALUATION_INTERVAL,
    SpecError,
    objective_from_resource,
)
from slo_guard.service.evaluation import EvaluationSettings
from slo_guard.service.health import EvaluationHeartbeats
from slo_guard.service.ports import MetricsSource
from slo_guard.service.reconcile import Outcome, Reconciler, ReconcilerSettings
from slo_guard.service.recorded import ManagedRules, RecordedSource, sync_rules_forever
from slo_guard.service.schedule import next_slot, phase_offset
from slo_guard.telemetry import OperatorMetrics

logger = logging.getLogger("slo_guard.runtime")

DEFAULT_INTERVAL = 30.0
RULE_SYNC_RETRY = 10.0
"""Seconds before a failed write of the recording rules is tried again."""


class StopFlag(Protocol):
    """What the evaluation loop needs of kopf's daemon stopper: truthiness and a timed wait."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float) -> Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Everything `slo-guard run` was told, as plain values."""

    prometheus: PrometheusSettings
    kubernetes: KubernetesSettings
    evaluation: EvaluationSettings
    namespaces: tuple[str, ...]
    """Empty means every namespace."""
    min_step: int
    status_heartbeat: float
    reassert_backoff_max: float
    health_port: int
    log_format: str
    log_level: str
    standalone: bool
    peering_name: str
    peering_lifetime: int
    priority: int
    rules: RuleFileSettings | None = None
    """The rule file to manage; None: no rule file."""
    rules_prometheusrule_labels: Mapping[str, str] | None = None
    """Manage PrometheusRule objects with these labels; None: no PrometheusRules."""
    rules_settle: float = 2.0

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, prometheus: PrometheusSettings) -> RuntimeConfig:
        return cls(
            prometheus=prometheus,
            kubernetes=KubernetesSettings(
                timeout=args.kube_timeout,
                max_concurrency=args.kube_max_concurrency,
                writes_per_second=args.kube_writes_per_second,
                write_burst=args.kube_write_burst,
            ),
            evaluation=EvaluationSettings(max_staleness=args.max_staleness, tenant_label=args.tenant_label),
            namespaces=tuple(args.namespaces),
            min_step=args.min_step,
            status_heartbeat=args.status_heartbeat,
            reassert_backoff_max=args.reassert_backoff_max,
            health_port=args.health_port,
            log_format=args.log_format,
            log_level=args.log_level,
            standalone=bool(args.standalone),
            peering_name=args.peering_name,
            peering_lifetime=args.peering_lifetime,
            priority=args.priority,
            rules=_rule_file_settings(args, prometheus=prometheus),
            rules_prometheusrule_labels=(
                parse_labels(args.rules_prometheusrule_labels) if args.rules_prometheusrule else None
            ),
            rules_settle=args.rules_settle,
        )


class Runtime:
    """The process's services: one Prometheus client, one Kubernetes client, one reconciler, shared by all SLOs."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.metrics = OperatorMetrics()
        self.heartbeats = EvaluationHeartbeats()
        self.ready = False
        self._prometheus = PrometheusClient(config.prometheus, metrics=self.metrics)
        self._kubernetes = KubernetesApi(load_api_client(config.kubernetes), config.kubernetes, metrics=self.metrics)
        self.rules = ManagedRules(config.evaluation)
        self._rule_sink = self._make_rule_sink()
        self._rule_sync: asyncio.Task[None] | None = None
        metrics_source: MetricsSource = self._prometheus
        if self._rule_sink is not None:
            metrics_source = RecordedSource(self.rules, self._prometheus, metrics=self.metrics)
        self.reconciler = Reconciler(
            metrics=metrics_source,
            workloads=DeploymentWorkloads(self._kubernetes),
            events=KubernetesEvents(self._kubernetes),
            statuses=SLOStatusStore(self._kubernetes),
            settings=ReconcilerSettings(
                min_step=config.min_step,
                evaluation=config.evaluation,
                heartbeat=config.status_heartbeat,
                reassert_backoff_max=config.reassert_backoff_max,
            ),
        )
        self.probes = ProbeServer(
            port=config.health_port,
            registry=self.metrics.registry,
            on_scrape=lambda: self.metrics.asyncio_tasks.set(len(asyncio.all_tasks())),
            heartbeats=self.heartbeats,
            is_ready=lambda: self.ready,
        )

    def _make_rule_sink(self) -> FileRuleSink | PrometheusRuleSink | None:
        if self.config.rules is not None:
            return FileRuleSink(self.config.rules, self.config.prometheus)
        if self.config.rules_prometheusrule_labels is not None:
            return PrometheusRuleSink(self._kubernetes, labels=self.config.rules_prometheusrule_labels)
        return None

    async def start(self) -> None:
        await self.probes.start()
        if self._rule_sink is not None:
            self._rule_sync = asyncio.create_task(
                sync_rules_forever(
                    self.rules,
                    self._rule_sink,
                    metrics=self.metrics,
                    settle=self.config.rules_settle,
                    retry_every=RULE_SYNC_RETRY,
                ),
                name="slo-guard-rule-sync",
            )
        self.ready = True

    async def close(self) -> None:
        if self._rule_sync is not None:
            self._rule_sync.cancel()
            await asyncio.gather(self._rule_sync, return_exceptions=True)
        if isinstance(self._rule_sink, FileRuleSink):
            self._rule_sink.close()
        await self.probes.stop()
        await self._prometheus.close()
        self._kubernetes.close()

    async def evaluate_forever(self, body: Mapping[str, Any], stopped: StopFlag) -> None:
        """Evaluate one SLO at a fixed rate, phase-shifted by its identity, until kopf stops the daemon."""
        key = _key(body)
        interval = _interval(body)
        anchor = time.monotonic() + phase_offset(key, interval)
        self.heartbeats.beat(key, interval=interval, now=time.monotonic())
        try:
            await stopped.wait(max(0.0, anchor - time.monotonic()))
            previous_start: float | None = None
            while not stopped:
                started = time.monotonic()
                if previous_start is not None:
                    self.metrics.evaluation_spacing.observe(started - previous_start)
                previous_start = started
                # A pass waiting for write tokens is throttled, not stuck: liveness gives a running pass longer.
                self.heartbeats.beat(key, interval=_interval(body), now=started, in_pass=True)
                await self._pass(key, body)
                interval = _interval(body)
                self.heartbeats.beat(key, interval=interval, now=time.monotonic())
                now = time.monotonic()
                await stopped.wait(next_slot(now=now, anchor=anchor, interval=interval) - now)
        finally:
            self.rules.forget(key)
            self.heartbeats.forget(key)
            namespace, _, name = key.partition("/")
            self.metrics.forget_slo(namespace=namespace, name=name)

    async def _pass(self, key: str, body: Mapping[str, Any]) -> None:
        started = time.monotonic()
        if self._rule_sink is not None:
            self._observe_rules(key, body)
        try:
            outcome = await self.reconciler.reconcile(body)
        except KubernetesUnavailable as error:
            # Expected while the API server struggles (the adapter already retried); the next slot tries again.
            logger.warning(
                "evaluation pass could not reach the Kubernetes API", extra={"slo": key, "error": str(error)}
            )
            return
        except Exception:
            # One SLO's failure must never end its own loop or touch the others; the next slot retries.
            logger.exception("evaluation pass failed", extra={"slo": key})
            return
        finally:
            self.metrics.evaluation_duration.observe(time.monotonic() - started)
        self._record(key, outcome)

    def _observe_rules(self, key: str, body: Mapping[str, Any]) -> None:
        try:
            objective = objective_from_resource(body, min_step=self.config.min_step)
        except SpecError:
            # The pass itself reports the bad field; a broken SLO has no rules to record.
            self.rules.forget(key)
            return
        self.rules.observe(objective)

    def _record(self, key: str, outcome: Outcome) -> None:
        namespace, _, name = key.partition("/")
        if outcome.evaluation is not None:
            self.metrics.record_evaluation(namespace=namespace, name=name, evaluation=outcome.evaluation)
        for action in outcome.actions:
            self.metrics.count_action(action=action.action, result=action.result)


def parse_labels(text: str) -> dict[str, str]:
    """`KEY=VALUE[,KEY=VALUE]`; ValueError names the part that is not `KEY=VALUE`."""
    labels = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        key, equals, value = part.partition("=")
        if not equals or not key:
            raise ValueError(f"expected KEY=VALUE, got {part!r}")
        labels[key] = value
    return labels


def _rule_file_settings(args: argparse.Namespace, *, prometheus: PrometheusSettings) -> RuleFileSettings | None:
    if args.rules_file is None:
        return None
    reload_url = args.rules_reload_url or f"{prometheus.base_url}/-/reload"
    return RuleFileSettings(path=Path(args.rules_file), reload_url=None if reload_url == "none" else reload_url)


def _key(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata") or {}
    return f"{metadata.get('namespace') or 'default'}/{metadata.get('name')}"


def _interval(body: Mapping[str, Any]) -> float:
    """The spec's interval; a broken or out-of-range one falls back to the default, so the pass that reports the
    bad field comes soon (only CEL, which an API server may lack, rejects `2h`)."""
    raw = (body.get("spec") or {}).get("evaluationInterval")
    if not isinstance(raw, str):
        return DEFAULT_INTERVAL
    try:
        seconds = parse_duration(raw)
    except DurationError:
        return DEFAULT_INTERVAL
    if not MIN_EVALUATION_INTERVAL <= seconds <= MAX_EVALUATION_INTERVAL:
        return DEFAULT_INTERVAL
    return float(seconds)
