"""Wiring for `slo-guard run`: builds the services once per process and runs each SLO's evaluation loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from slo_guard.adapters.events import KubernetesEvents
from slo_guard.adapters.kubernetes_api import KubernetesApi, KubernetesSettings, load_api_client
from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.adapters.rulesink import FileRuleSink, PrometheusRuleSink, RuleFileSettings
from slo_guard.adapters.slo_status import SLOStatusStore, list_slo_keys
from slo_guard.adapters.workloads import KubernetesWorkloads
from slo_guard.domain.durations import DurationError, parse_duration
from slo_guard.handlers.gate_server import AdmissionServer, GateServer
from slo_guard.handlers.probes import ProbeServer
from slo_guard.handlers.ui_server import UIServer
from slo_guard.resources import (
    MAX_EVALUATION_INTERVAL,
    MIN_EVALUATION_INTERVAL,
    SpecError,
    objective_from_resource,
)
from slo_guard.service.admission import AdmissionReviewer
from slo_guard.service.evaluation import EvaluationSettings
from slo_guard.service.gate_board import GateBoard, entry_after_pass, entry_from_resource
from slo_guard.service.health import EvaluationHeartbeats
from slo_guard.service.ports import KubernetesUnavailable, MetricsSource, ObjectRef
from slo_guard.service.reconcile import Outcome, Reconciler, ReconcilerSettings, slo_ref
from slo_guard.service.recorded import ManagedRules, RecordedSource, sync_rules_forever
from slo_guard.service.schedule import next_slot, phase_offset
from slo_guard.telemetry import OperatorMetrics

logger = logging.getLogger("slo_guard.runtime")

DEFAULT_INTERVAL = 30.0
RULE_SYNC_RETRY = 10.0
"""Seconds before a failed write of the recording rules is tried again."""
FIRST_LISTING_RECHECK = 1.0
"""Seconds between looks at whether kopf picked up every SLO of the first listing."""
FIRST_LISTING_REFRESH = 30.0
"""Seconds before that listing is taken again while kopf has not picked up every SLO in it."""
PEERING_CHECK_EVERY = 5.0
"""Seconds between looks for kopf's peering resource while it is missing."""
PEERING_WARN_EVERY = 60.0
"""Seconds between two warnings that it is still missing."""
PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"
UI_QUERY_CONCURRENCY = 2
"""Range queries the web UI may have in flight at once, whatever evaluation's own bound is."""
UI_BREAKER = "prometheus-ui"


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
    startup_wait: float
    """Seconds `run` waits at start for the API server before it gives up."""
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
    gate_port: int = 0
    """0: no gate API."""
    gate_token_file: Path | None = None
    webhook: WebhookSettings | None = None
    """None: no admission webhook."""
    ui_port: int = 0
    """0: no web UI."""
    ui_token_file: Path | None = None
    ui_auth_header: str | None = None

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
            startup_wait=args.kube_startup_wait,
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
            ui_port=args.ui_port,
            ui_token_file=Path(args.ui_token_file) if args.ui_token_file else None,
            ui_auth_header=args.ui_auth_header or None,
            gate_port=args.gate_port,
            gate_token_file=Path(args.gate_token_file) if args.gate_token_file else None,
            webhook=(
                WebhookSettings(
                    port=args.webhook_port,
                    cert_file=Path(args.webhook_cert_file),
                    key_file=Path(args.webhook_key_file),
                )
                if args.webhook_cert_file
                else None
            ),
        )


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    port: int
    cert_file: Path
    key_file: Path


class Runtime:
    """The process's services: one Prometheus client, one Kubernetes client, one reconciler, shared by all SLOs."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.metrics = OperatorMetrics()
        self.heartbeats = EvaluationHeartbeats()
        self.listing_problem: str | None = "starting: no SLO listing yet"
        """What readiness waits for: a first listing of SLOs, every one of them picked up by kopf."""
        self.peering_problem: str | None = None
        """Why kopf cannot start watching: its peering resource is not installed."""
        self.restart_reason: str | None = None
        """Set when the process must start again to see the cluster as it is now; kopf is told to stop."""
        self._stop_operator: Callable[[], None] = lambda: None
        self._prometheus = PrometheusClient(config.prometheus, metrics=self.metrics)
        self._kubernetes = KubernetesApi(load_api_client(config.kubernetes), config.kubernetes, metrics=self.metrics)
        self.rules = ManagedRules(config.evaluation)
        self._rule_sink = self._make_rule_sink()
        self._rule_sync: asyncio.Task[None] | None = None
        self._peering_check: asyncio.Task[None] | None = None
        self._first_listing: asyncio.Task[None] | None = None
        metrics_source: MetricsSource = self._prometheus
        if self._rule_sink is not None:
            metrics_source = RecordedSource(self.rules, self._prometheus, metrics=self.metrics)
        events = KubernetesEvents(self._kubernetes)
        self.reconciler = Reconciler(
            metrics=metrics_source,
            workloads=KubernetesWorkloads(self._kubernetes),
            events=events,
            statuses=SLOStatusStore(self._kubernetes),
            settings=ReconcilerSettings(
                min_step=config.min_step,
                evaluation=config.evaluation,
                heartbeat=config.status_heartbeat,
                reassert_backoff_max=config.reassert_backoff_max,
                admission_served=config.webhook is not None,
            ),
        )
        self.gates = GateBoard()
        self.slo_bodies: dict[str, Mapping[str, Any]] = {}
        """kopf's body of every SLO this process evaluates, by `namespace/name`; kopf updates it in place."""
        self._gate_server = (
            GateServer(self.gates, port=config.gate_port, metrics=self.metrics, token_file=config.gate_token_file)
            if config.gate_port
            else None
        )
        # The UI's range queries have a client (and breaker) of their own: a slow chart must never open the
        # breaker evaluation depends on.
        self._ui_prometheus = (
            PrometheusClient(
                replace(config.prometheus, max_concurrency=UI_QUERY_CONCURRENCY),
                metrics=self.metrics,
                breaker_name=UI_BREAKER,
            )
            if config.ui_port
            else None
        )
        self._ui_server = (
            UIServer(
                self.gates,
                self.slo_bodies,
                self._ui_prometheus,
                port=config.ui_port,
                token_file=config.ui_token_file,
                auth_header=config.ui_auth_header,
                refresh_seconds=DEFAULT_INTERVAL,
                rules_enabled=self._rule_sink is not None,
                min_step=config.min_step,
                tenant_label=config.evaluation.tenant_label,
            )
            if config.ui_port
            else None
        )
        self._admission_server = (
            AdmissionServer(
                AdmissionReviewer(self.gates, events=events, metrics=self.metrics),
                port=config.webhook.port,
                cert_file=config.webhook.cert_file,
                key_file=config.webhook.key_file,
            )
            if config.webhook is not None
            else None
        )
        self.probes = ProbeServer(
            port=config.health_port,
            registry=self.metrics.registry,
            on_scrape=lambda: self.metrics.asyncio_tasks.set(len(asyncio.all_tasks())),
            heartbeats=self.heartbeats,
            not_ready=self.not_ready,
        )

    def _make_rule_sink(self) -> FileRuleSink | PrometheusRuleSink | None:
        if self.config.rules is not None:
            return FileRuleSink(self.config.rules, self.config.prometheus)
        if self.config.rules_prometheusrule_labels is not None:
            return PrometheusRuleSink(self._kubernetes, labels=self.config.rules_prometheusrule_labels)
        return None

    def not_ready(self) -> str | None:
        """None when ready; otherwise what the operator is waiting for."""
        return self.peering_problem or self.listing_problem

    async def start(self, *, stop_operator: Callable[[], None]) -> None:
        self._stop_operator = stop_operator
        await self.probes.start()
        for server in (self._gate_server, self._admission_server, self._ui_server):
            if server is not None:
                await server.start()
        if not self.config.standalone:
            self._peering_check = asyncio.create_task(self._check_peering(), name="slo-guard-peering-check")
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
        self._first_listing = asyncio.create_task(self._await_first_listing(), name="slo-guard-first-listing")

    async def close(self) -> None:
        for task in (self._rule_sync, self._peering_check, self._first_listing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if isinstance(self._rule_sink, FileRuleSink):
            self._rule_sink.close()
        for server in (self._gate_server, self._admission_server, self._ui_server):
            if server is not None:
                await server.stop()
        if self._ui_prometheus is not None:
            await self._ui_prometheus.close()
        await self.probes.stop()
        await self._prometheus.close()
        self._kubernetes.close()

    async def _await_first_listing(self) -> None:
        """Ready once a listing of the SLOs arrived and kopf runs an evaluation loop for every one listed.

        kopf gives no public signal that its watches are up; an SLO's loop starts only after kopf listed it, so a
        loop for each SLO we listed ourselves shows that kopf's listing arrived too.
        """
        listed: set[str] | None = None
        listed_at = 0.0
        while True:
            # Listing again now and then drops SLOs deleted before kopf saw them.
            if listed is None or time.monotonic() - listed_at >= FIRST_LISTING_REFRESH:
                try:
                    listed = await list_slo_keys(self._kubernetes, namespaces=self.config.namespaces)
                    listed_at = time.monotonic()
                except KubernetesUnavailable as error:
                    self.listing_problem = f"cannot list ServiceLevelObjectives: {error}"
            if listed is not None:
                waiting = sorted(key for key in listed if key not in self.heartbeats)
                if not waiting:
                    self.listing_problem = None
                    return
                shown = ", ".join(waiting[:5])
                self.listing_problem = f"kopf has not picked up {len(waiting)} of {len(listed)} SLOs yet: {shown}"
            await asyncio.sleep(FIRST_LISTING_RECHECK)

    async def _check_peering(self) -> None:
        """kopf waits in silence, watching nothing, while its peering resource is missing; say so until it exists.

        kopf looks for resources only at start-up (scanning is off, to keep RBAC small), so once the resource
        appears the process stops and the next start (the pod's restart) watches with it.
        """
        clusterwide = not self.config.namespaces
        kind, plural = ("ClusterKopfPeering", "clusterkopfpeerings") if clusterwide else ("KopfPeering", "kopfpeerings")
        missing_at_start = False
        warned_at: float | None = None
        while True:
            try:
                served = await self._kubernetes.serves(group=PEERING_GROUP, version=PEERING_VERSION, plural=plural)
            except KubernetesUnavailable as error:
                logger.warning("could not look for kopf's peering resource", extra={"error": str(error)})
            else:
                if served and not missing_at_start:
                    return
                if served:
                    self.restart_reason = (
                        f"{PEERING_GROUP}/{PEERING_VERSION} {kind} is installed now; restarting so kopf sees it"
                    )
                    logger.warning(self.restart_reason)
                    self._stop_operator()
                    return
                missing_at_start = True
                self.peering_problem = (
                    f"{PEERING_GROUP}/{PEERING_VERSION} {kind} is not installed, so kopf watches no SLO; "
                    "install kopf's peering CRDs (`kubectl apply -k manifests/kopf-peering`) or run with --standalone "
                    "(one replica only)"
                )
                if warned_at is None or time.monotonic() - warned_at >= PEERING_WARN_EVERY:
                    logger.warning(self.peering_problem)
                    warned_at = time.monotonic()
            await asyncio.sleep(PEERING_CHECK_EVERY)

    async def evaluate_forever(self, body: Mapping[str, Any], stopped: StopFlag) -> None:
        """Evaluate one SLO at a fixed rate, phase-shifted by its identity, until kopf stops the daemon."""
        ref = slo_ref(body)
        key = ref.key
        interval = _interval(body)
        anchor = time.monotonic() + phase_offset(key, interval)
        self.heartbeats.beat(key, interval=interval, now=time.monotonic())
        # Until its first pass here, the SLO's gate is what the last pass, in any process, wrote to its status.
        self.gates.put(entry_from_resource(ref, body))
        self.slo_bodies[key] = body
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
                await self._pass(ref, body)
                interval = _interval(body)
                self.heartbeats.beat(key, interval=interval, now=time.monotonic())
                now = time.monotonic()
                await stopped.wait(next_slot(now=now, anchor=anchor, interval=interval) - now)
        finally:
            self.rules.forget(key)
            self.heartbeats.forget(key)
            self.gates.forget(key)
            self.slo_bodies.pop(key, None)
            self.metrics.forget_slo(namespace=ref.namespace, name=ref.name)

    async def _pass(self, ref: ObjectRef, body: Mapping[str, Any]) -> None:
        key = ref.key
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
        self._record(ref, outcome)

    def _observe_rules(self, key: str, body: Mapping[str, Any]) -> None:
        try:
            objective = objective_from_resource(body, min_step=self.config.min_step)
        except SpecError:
            # The pass itself reports the bad field; a broken SLO has no rules to record.
            self.rules.forget(key)
            return
        self.rules.observe(objective)

    def _record(self, ref: ObjectRef, outcome: Outcome) -> None:
        entry = entry_after_pass(ref, outcome)
        if entry is not None:
            self.gates.put(entry)
        if outcome.evaluation is not None:
            self.metrics.record_evaluation(namespace=ref.namespace, name=ref.name, evaluation=outcome.evaluation)
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
