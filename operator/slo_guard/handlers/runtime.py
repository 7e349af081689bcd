"""Wiring for `slo-guard run`: builds the services once per process and runs each SLO's evaluation loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slo_guard.adapters.events import KubernetesEvents
from slo_guard.adapters.kubernetes_api import USER_AGENT, KubernetesApi, KubernetesSettings, load_api_client
from slo_guard.adapters.leases import KubernetesLeaseStore
from slo_guard.adapters.peering import PEERING_GROUP, PEERING_VERSION, peering_statuses
from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.adapters.rulesink import FileRuleSink, PrometheusRuleSink, RuleFileSettings
from slo_guard.adapters.slo_reader import SLOObjects
from slo_guard.adapters.slo_status import SLOStatusStore, list_slo_keys
from slo_guard.adapters.workloads import KubernetesWorkloads
from slo_guard.domain.durations import DurationError, parse_duration
from slo_guard.handlers.gate_server import AdmissionServer, GateServer
from slo_guard.handlers.heap import trim_heap_forever
from slo_guard.handlers.peering import paused_by_peers
from slo_guard.handlers.probes import ProbeServer
from slo_guard.handlers.ui_server import UIServer
from slo_guard.resources import (
    MAX_EVALUATION_INTERVAL,
    MIN_EVALUATION_INTERVAL,
    SpecError,
    objective_from_resource,
)
from slo_guard.service.admission import AdmissionReviewer
from slo_guard.service.bodies import CompactBodies
from slo_guard.service.evaluation import EvaluationSettings
from slo_guard.service.gate_board import GateBoard, entry_after_pass, entry_from_resource
from slo_guard.service.health import EvaluationHeartbeats
from slo_guard.service.ports import KubernetesUnavailable, MetricsSource, ObjectRef, OwnershipLost
from slo_guard.service.reconcile import Outcome, Reconciler, ReconcilerSettings, slo_ref
from slo_guard.service.recorded import (
    ManagedRules,
    RecordedSource,
    follow_recorded_forever,
    sync_rules_forever,
)
from slo_guard.service.schedule import PassScheduler
from slo_guard.service.sharding import ShardCoordinator, shard_of
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
PEERING_FOLLOW_EVERY = 2.0
"""Seconds between reads of kopf's peering objects, to pause evaluation about when kopf pauses its watches."""
UI_QUERY_CONCURRENCY = 2
"""Range queries the web UI may have in flight at once, whatever evaluation's own bound is."""
UI_BREAKER = "prometheus-ui"
LATE_SLOT_SHARE = 0.1
"""In rules mode, the share of its interval an SLO's slot may wait for its group's late values: the spacing
target is at most 1.1 intervals."""
MAX_PASSES_IN_FLIGHT = 256
"""Passes running at once; the Prometheus and Kubernetes bulkheads bound their calls further."""
LEASE_CONCURRENCY = 2
"""Lease calls in flight at once: a renewal never waits behind status writes, and never needs more."""
LEASE_BREAKER = "kubernetes-leases"
FINALIZER_WAIT = 2.0
"""Seconds between looks, on a replica not owning a deleted SLO, at whether its owner has finalized it."""
PASS_GRACE_AT_EXIT = 10.0
"""Seconds the passes in flight get to end when the process stops (every call in them has a timeout)."""
HEAP_TRIM_EVERY = 60.0
"""Seconds between returns of freed heap memory to the OS."""


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
    identity: str
    """This replica's name among its peers (kopf peering, shard Leases)."""
    shards: int = 1
    """1: kopf peering decides which one replica acts; more: SLOs are split by shard Leases."""
    shard_lease_duration: int = 15
    shard_lease_namespace: str = "slo-guard"
    rules: RuleFileSettings | None = None
    """The rule file to manage; None: no rule file."""
    rules_prometheusrule_labels: Mapping[str, str] | None = None
    """Manage PrometheusRule objects with these labels; None: no PrometheusRules."""
    rules_settle: float = 2.0
    rules_read_every: float = 1.0
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
            # Shard Leases decide who evaluates what; kopf peering would pause all but one replica.
            standalone=bool(args.standalone) or args.shards > 1,
            peering_name=args.peering_name,
            peering_lifetime=args.peering_lifetime,
            priority=args.priority,
            identity=args.identity or os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}",
            shards=args.shards,
            shard_lease_duration=int(args.shard_lease_duration),
            shard_lease_namespace=args.shard_lease_namespace or os.environ.get("POD_NAMESPACE") or "slo-guard",
            rules=_rule_file_settings(args, prometheus=prometheus),
            rules_prometheusrule_labels=(
                parse_labels(args.rules_prometheusrule_labels) if args.rules_prometheusrule else None
            ),
            rules_settle=args.rules_settle,
            rules_read_every=args.rules_read_every,
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
        self.scheduler = PassScheduler(
            self._run_pass,
            heartbeats=self.heartbeats,
            max_in_flight=MAX_PASSES_IN_FLIGHT,
            on_spacing=self.metrics.evaluation_spacing.observe,
        )
        self._scheduling: asyncio.Task[None] | None = None
        self._paused = False
        """kopf paused this replica in favour of a peer."""
        self._sharding_stop = asyncio.Event()
        self._sharding_task: asyncio.Task[None] | None = None
        self.listing_problem: str | None = "starting: no SLO listing yet"
        """What readiness waits for: a first listing of SLOs, every one of them picked up by kopf."""
        self.peering_problem: str | None = None
        """Why kopf cannot start watching: its peering resource is not installed."""
        self.restart_reason: str | None = None
        """Set when the process must start again to see the cluster as it is now; kopf is told to stop."""
        self._stop_operator: Callable[[], None] = lambda: None
        self._prometheus = PrometheusClient(config.prometheus, metrics=self.metrics)
        # The replica's name in the User-Agent tells replicas apart in the API server's audit log.
        self._user_agent = f"{USER_AGENT} ({config.identity})"
        self._kubernetes = KubernetesApi(
            load_api_client(config.kubernetes, user_agent=self._user_agent), config.kubernetes, metrics=self.metrics
        )
        self.rules = ManagedRules(config.evaluation, shards=config.shards)
        self._rule_sink = self._make_rule_sink()
        self._rule_sync: asyncio.Task[None] | None = None
        self._recorded_follow: asyncio.Task[None] | None = None
        self._heap_trim: asyncio.Task[None] | None = None
        self._peering_check: asyncio.Task[None] | None = None
        self._first_listing: asyncio.Task[None] | None = None
        self.sharding = self._make_sharding()
        metrics_source: MetricsSource = self._prometheus
        self._recorded: RecordedSource | None = None
        if self._rule_sink is not None:
            metrics_source = self._recorded = RecordedSource(
                self.rules,
                self._prometheus,
                metrics=self.metrics,
                held_shards=self.sharding.held if self.sharding is not None else None,
            )
        events = KubernetesEvents(self._kubernetes)
        self._slo_objects = SLOObjects(self._kubernetes)
        self.reconciler = Reconciler(
            owns=self.owns,
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
        self.slo_bodies = CompactBodies()
        """The last body kopf delivered for every SLO this process watches, by `namespace/name`."""
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
            on_scrape=self._on_scrape,
            heartbeats=self.heartbeats,
            not_ready=self.not_ready,
        )

    def _make_sharding(self) -> ShardCoordinator | None:
        if self.config.shards == 1:
            return None
        # Leases have a client of their own (breaker, bulkhead, no write bucket): renewals must not starve.
        self._lease_api = KubernetesApi(
            load_api_client(self.config.kubernetes, user_agent=self._user_agent),
            # A renewal that hangs longer than a renew period could not have kept the shard anyway.
            replace(
                self.config.kubernetes,
                max_concurrency=LEASE_CONCURRENCY,
                timeout=min(self.config.kubernetes.timeout, self.config.shard_lease_duration / 3),
            ),
            metrics=self.metrics,
            breaker_name=LEASE_BREAKER,
        )
        return ShardCoordinator(
            KubernetesLeaseStore(self._lease_api, self.config.shard_lease_namespace),
            # A fresh suffix per process: a restarted replica must not take its predecessor's leases for its own.
            identity=f"{self.config.identity}-{secrets.token_hex(3)}",
            shards=self.config.shards,
            on_gained=self._shard_gained,
            on_releasing=self._shard_releasing,
            lease_duration_seconds=self.config.shard_lease_duration,
        )

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """Release the deleted SLO's holds, on the replica that owns its shard.

        Every replica carries the same finalizer, and kopf lets the object go once any of them returns: another
        replica waits until it owns the shard itself (the owner died) or the owner has finalized the object away.
        """
        ref = slo_ref(body)
        while not self.owns(ref.key):
            if await self._slo_objects.read(namespace=ref.namespace, name=ref.name) is None:
                return
            await asyncio.sleep(FINALIZER_WAIT)
        await self.reconciler.finalize(body)

    def owns(self, key: str) -> bool:
        """Whether this replica evaluates and acts for the SLO `namespace/name` now."""
        return self.sharding is None or self.sharding.holds(shard_of(key, self.config.shards))

    def _shard_gained(self, shard: int) -> None:
        assert self.sharding is not None
        logger.info("shard gained", extra={"shard": shard, "sharding": self.sharding.describe()})
        if self._paused:
            return
        for key in [key for key in self.slo_bodies if shard_of(key, self.config.shards) == shard]:
            self.scheduler.add(key, interval=_interval(self.slo_bodies[key]))

    async def _shard_releasing(self, shard: int) -> None:
        """Stop the shard's SLOs here and wait for their passes in flight, before another replica may start them."""
        keys = [key for key in self.scheduler if shard_of(key, self.config.shards) == shard]
        for key in keys:
            self._hand_over(key)
        # Writes stopped when the shard stopped being held (WRITE_PERMISSION); a write already sent ends within
        # one request timeout. A pass still waiting for a write token is refused when it gets one.
        await self.scheduler.drain(keys, within=self.config.kubernetes.timeout)
        assert self.sharding is not None
        logger.info("shard released", extra={"shard": shard, "slos": len(keys), "sharding": self.sharding.describe()})

    def _hand_over(self, key: str) -> None:
        """Forget what this replica reported for an SLO another replica evaluates from now on."""
        self.scheduler.remove(key)
        if isinstance(self._rule_sink, FileRuleSink):
            # Each replica's rule file holds its own SLOs. A PrometheusRule is one object per SLO, which the new
            # owner writes alike: deleting it here could land after that write.
            self.rules.forget(key)
        body = self.slo_bodies.get(key)
        if body is not None:
            ref = slo_ref(body)
            self.metrics.forget_slo(namespace=ref.namespace, name=ref.name)
            self.gates.put(entry_from_resource(ref, body))

    def _on_scrape(self) -> None:
        self.metrics.asyncio_tasks.set(len(asyncio.all_tasks()))
        self.metrics.evaluated_slos.set(len(self.scheduler))
        self.metrics.shards_held.set(len(self.sharding.held()) if self.sharding is not None else 0)

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
        self._heap_trim = asyncio.create_task(trim_heap_forever(HEAP_TRIM_EVERY), name="slo-guard-heap-trim")
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
        if self._recorded is not None:
            self._recorded_follow = asyncio.create_task(
                follow_recorded_forever(self._recorded, self._run_fresh, every=self.config.rules_read_every),
                name="slo-guard-recorded-follow",
            )
        self._first_listing = asyncio.create_task(self._await_first_listing(), name="slo-guard-first-listing")
        self._scheduling = asyncio.create_task(self.scheduler.run(), name="slo-guard-scheduler")
        if self.sharding is not None:
            self._sharding_task = asyncio.create_task(
                self.sharding.run_forever(self._sharding_stop), name="slo-guard-sharding"
            )

    async def close(self) -> None:
        if self.sharding is not None:
            # Hand every shard over now (after its passes end), so the others take over at their next tick.
            self._sharding_stop.set()
            if self._sharding_task is not None:
                await asyncio.gather(self._sharding_task, return_exceptions=True)
            await self.sharding.release_all()
            self._lease_api.close()
        for task in (
            self._scheduling,
            self._rule_sync,
            self._recorded_follow,
            self._heap_trim,
            self._peering_check,
            self._first_listing,
        ):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.scheduler.close(grace=PASS_GRACE_AT_EXIT)
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
        """Ready once a listing of the SLOs arrived and kopf delivered every SLO listed.

        kopf gives no public signal that its watches are up; an event for each SLO we listed ourselves shows that
        kopf's listing arrived too.
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
                waiting = sorted(key for key in listed if key not in self.slo_bodies)
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
                    await self._follow_peering()
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

    async def _follow_peering(self) -> None:
        """Stop evaluating while kopf pauses this replica for a peer, and start again when it resumes."""
        while True:
            try:
                statuses = await peering_statuses(
                    self._kubernetes, name=self.config.peering_name, namespaces=self.config.namespaces
                )
            except KubernetesUnavailable as error:
                # Keep the last answer: kopf, whose watch also needs the API server, keeps its own.
                logger.warning("could not read kopf's peering objects", extra={"error": str(error)})
            else:
                self._set_paused(
                    paused_by_peers(
                        statuses,
                        identity=self.config.identity,
                        priority=self.config.priority,
                        now=datetime.now(UTC),
                    )
                )
            await asyncio.sleep(PEERING_FOLLOW_EVERY)

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            logger.warning("a peer of higher or equal priority is alive: kopf pauses, and so does evaluation")
            # kopf lists every SLO again when it resumes; until then nothing here is current.
            for body in list(self.slo_bodies.values()):
                self._stop_evaluating(slo_ref(body))
        else:
            logger.info("kopf resumes: evaluating again")
            for key, body in self.slo_bodies.items():
                self.scheduler.add(key, interval=_interval(body))

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Take in one watch event of an SLO: schedule it, update it, or stop evaluating it."""
        ref = slo_ref(body)
        key = ref.key
        if event_type == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
            # No pass starts once deletion is requested: the finalizer owns the targets from then on, and waits
            # for a pass in flight to end (the reconciler serialises both per SLO).
            self._stop_evaluating(ref)
            return
        known = key in self.slo_bodies
        self.slo_bodies[key] = body
        evaluated_here = not self._paused and self.owns(key)
        if not known or not evaluated_here:
            # Until its first pass here, and for an SLO another replica evaluates, the gate is what the last pass,
            # in any process, wrote to its status.
            self.gates.put(entry_from_resource(ref, body))
        if evaluated_here:
            self.scheduler.add(key, interval=_interval(body))

    def _stop_evaluating(self, ref: ObjectRef) -> None:
        key = ref.key
        self.scheduler.remove(key)
        self.rules.forget(key)
        self.gates.forget(key)
        self.slo_bodies.pop(key, None)
        self.metrics.forget_slo(namespace=ref.namespace, name=ref.name)

    def _run_fresh(self, key: str, lateness_allowed: float) -> None:
        # Its next slot waits two reads and the groups' recent lateness longer than the interval, so the next read
        # that brings its group's values runs the pass, not a slot just before it on values one interval old (on a
        # busy Prometheus a fixed 3 s ran a quarter of the passes twice). Waiting for all the lateness let an SLO
        # whose group skipped a run go two intervals without a pass: a tenth of the interval is the most.
        interval = self.rules.interval_of(key) or 0
        late = min(lateness_allowed, LATE_SLOT_SHARE * interval)
        self.scheduler.run_now(key, slack=2 * self.config.rules_read_every + late)

    async def _run_pass(self, key: str) -> None:
        body = self.slo_bodies.get(key)
        if body is not None:
            await self._pass(slo_ref(body), body)

    async def _pass(self, ref: ObjectRef, body: Mapping[str, Any]) -> None:
        key = ref.key
        started = time.monotonic()
        if self._rule_sink is not None:
            self._observe_rules(key, body)
        try:
            outcome = await self.reconciler.reconcile(body)
        except OwnershipLost:
            logger.info("pass ended early: its shard moved to another replica", extra={"slo": key})
            return
        except KubernetesUnavailable as error:
            # Expected while the API server struggles (the adapter already retried); the next slot tries again.
            logger.warning(
                "evaluation pass could not reach the Kubernetes API", extra={"slo": key, "error": str(error)}
            )
            return
        finally:
            self.metrics.evaluation_duration.observe(time.monotonic() - started)
        if key in self.scheduler:
            # A pass that ends after its SLO was deleted or handed over must not bring its series back.
            self._record(ref, outcome)

    def _observe_rules(self, key: str, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        # The API server bumps the generation on every spec change: an unchanged one needs no rebuild of the rules.
        version = (metadata.get("uid"), metadata.get("generation"))
        if version[1] is not None and self.rules.is_current(key, version):
            return
        try:
            objective = objective_from_resource(body, min_step=self.config.min_step)
        except SpecError:
            # The pass itself reports the bad field; a broken SLO has no rules to record.
            self.rules.forget(key)
            return
        self.rules.observe(objective, version=version)

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
    return RuleFileSettings(
        path=Path(args.rules_file),
        reload_url=None if reload_url == "none" else reload_url,
        reload_timeout=args.rules_reload_timeout,
    )


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
