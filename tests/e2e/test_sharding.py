"""Three replicas split 300 SLOs through shard Leases: one evaluator per SLO at every moment, a SIGKILLed replica's
SLOs taken over within the lease duration without a second action, and a rebalance without gap or duplicate when it
comes back.

Ownership is read from the replicas' own /metrics (a replica exports `slo_guard_state` only for the SLOs it
evaluates now) and from the emulator's write log (each replica names itself in its User-Agent).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest
from tests.conftest import summary_lines
from tests.e2e.conftest import OperatorProcess, PrivateCluster, PrivateClusters, World, wait_for
from tests.e2e.scenario import FAILING, HEALTHY, deploy, is_paused, metric_families, one_target, slo
from tests.support.exporter import SyntheticService

from slo_guard.service.sharding import shard_of

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

NAMESPACE = "e2e-shards"
LEASES = "slo-guard"
SHARDS = 3
SLOS = 300
FAILING_EVERY = 20
"""Every 20th SLO reads a failing service and pauses its Deployment: 15 actions, spread over the shards."""
INTERVAL = 10
LEASE_DURATION = 6
RENEW = LEASE_DURATION / 3
STATUS_HEARTBEAT = 30
"""The e2e operators' --status-heartbeat: every SLO writes its status at least this often, even when healthy."""
Key = tuple[str, str]
SHARDING = summary_lines("slo-guard: three replicas over 300 SLOs, one SIGKILLed and started again")


def test_three_replicas_share_300_slos_survive_a_sigkill_and_rebalance_when_it_returns(
    world: World, private_clusters: PrivateClusters
) -> None:
    healthy, failing = world.take_service(HEALTHY), world.take_service(FAILING)
    # The sharded install adds a Role for Leases to the base ClusterRole: its calls are not the base's to grant.
    with private_clusters.cluster(
        "sharding", watched_namespace=None, manifests=[], kopf_peering=False, rbac_checked=False
    ) as cluster:
        cluster.kube.ensure_namespace(LEASES)
        names = [f"slo-{index:03d}" for index in range(SLOS)]
        for index, name in enumerate(names):
            source = failing if index % FAILING_EVERY == 0 else healthy
            _guard(cluster, name, source)
        acting = [name for index, name in enumerate(names) if index % FAILING_EVERY == 0]
        everything = {(NAMESPACE, name) for name in names}

        replicas = {identity: _start(cluster, identity) for identity in ("replica-a", "replica-b", "replica-c")}
        watch = Ownership(replicas)
        wait_for(lambda: watch.sample() and watch.covered() == everything, timeout=120, what="all 300 SLOs evaluated")
        wait_for(lambda: all(is_paused(cluster, NAMESPACE, name) for name in acting), timeout=60, what="15 pauses")
        assert sorted(len(owned) for owned in watch.latest.values())[0] > 0, "every replica evaluates some SLOs"
        steady_from = len(cluster.emulator.requests())
        watch.observe(for_seconds=STATUS_HEARTBEAT + 5)
        _assert_one_status_writer_per_slo(cluster, since=steady_from)

        victim_shards = _shards_of(cluster, "replica-b")
        assert victim_shards, "replica-b holds a shard"
        victim_slos = watch.latest["replica-b"]
        late = next(f"late-{n}" for n in range(100) if shard_of(f"{NAMESPACE}/late-{n}", SHARDS) in victim_shards)
        replicas["replica-b"].kill()
        killed = time.monotonic()
        del replicas["replica-b"]
        _guard(cluster, late, failing)
        watch.forget("replica-b")
        wait_for(
            lambda: not any(_shards_of(cluster, name) for name in ("replica-b",)),
            timeout=LEASE_DURATION + RENEW + 5,
            what="replica-b's shard Leases taken over",
        )
        leases_moved = time.monotonic() - killed
        wait_for(
            lambda: watch.sample() and victim_slos <= watch.covered(),
            timeout=LEASE_DURATION + RENEW + INTERVAL + 15,
            what="replica-b's SLOs evaluated by the others",
        )
        taken_over = time.monotonic() - killed
        wait_for(lambda: is_paused(cluster, NAMESPACE, late), timeout=30, what=f"{late} paused by a survivor")
        SHARDING.append(
            f"SIGKILL -> its shard Leases held by the others: {leases_moved:.1f} s; its {len(victim_slos)} SLOs "
            f"evaluated again: {taken_over:.1f} s (lease {LEASE_DURATION} s, interval {INTERVAL} s)"
        )
        assert taken_over <= LEASE_DURATION + RENEW + INTERVAL + 10, "slack for a busy 2-core machine"
        watch.restart_gaps()

        replicas["replica-b2"] = _start(cluster, "replica-b2")
        watch.add("replica-b2", replicas["replica-b2"])
        wait_for(
            lambda: watch.sample() and all(len(_shards_of(cluster, name)) == 1 for name in replicas),
            timeout=6 * LEASE_DURATION,
            what="one shard per replica",
        )
        wait_for(lambda: watch.sample() and watch.covered() == everything | {(NAMESPACE, late)}, timeout=30, what="all")
        watch.observe(for_seconds=INTERVAL)
        SHARDING.append(f"rebalance: longest time an SLO had no evaluator: {watch.longest_gap():.1f} s")

        assert watch.duplicates == [], "no SLO was ever evaluated by two replicas at once"
        # Hand-over: the lease moves within a lease duration, then the SLO's first pass comes at its phase.
        assert watch.longest_gap() <= INTERVAL + LEASE_DURATION + 4, "a moved SLO is evaluated again promptly"
        for name in [*acting, late]:
            pauses = _operator_writes(cluster, "deployments", name)
            assert len(pauses) == 1, f"{name}: one pause, by one replica, in the whole run: {pauses}"
        assert sorted(lease_holders(cluster)) == sorted(f"{name}-" for name in replicas), "one shard each"


class Ownership:
    """Which replica exports which SLO's state, sampled over time: duplicates and coverage gaps."""

    def __init__(self, replicas: dict[str, OperatorProcess]) -> None:
        self.replicas = dict(replicas)
        self.latest: dict[str, set[Key]] = {}
        self.duplicates: list[tuple[Key, list[str]]] = []
        self._uncovered_since: dict[Key, float] = {}
        self._gaps: list[float] = [0.0]
        self._seen: set[Key] = set()

    def add(self, identity: str, operator: OperatorProcess) -> None:
        self.replicas[identity] = operator

    def forget(self, identity: str) -> None:
        self.replicas.pop(identity)
        self.latest.pop(identity, None)

    def sample(self) -> bool:
        now = time.monotonic()
        self.latest = {identity: _evaluated(operator) for identity, operator in self.replicas.items()}
        owners: dict[Key, list[str]] = defaultdict(list)
        for identity, keys in self.latest.items():
            for key in keys:
                owners[key].append(identity)
        self.duplicates += [(key, names) for key, names in owners.items() if len(names) > 1]
        self._seen |= owners.keys()
        for key in self._seen:
            if key in owners:
                started = self._uncovered_since.pop(key, None)
                if started is not None:
                    self._gaps.append(now - started)
            else:
                self._uncovered_since.setdefault(key, now)
        return True

    def covered(self) -> set[Key]:
        return set().union(*self.latest.values()) if self.latest else set()

    def observe(self, *, for_seconds: float) -> None:
        until = time.monotonic() + for_seconds
        while time.monotonic() < until:
            self.sample()
            time.sleep(0.5)

    def restart_gaps(self) -> None:
        self._gaps = [0.0]

    def longest_gap(self) -> float:
        now = time.monotonic()
        return max([*self._gaps, *(now - since for since in self._uncovered_since.values())])


def _guard(cluster: PrivateCluster, name: str, source: SyntheticService) -> None:
    deploy(cluster, NAMESPACE, name)
    body = slo(name, NAMESPACE, source, targets=one_target(name))
    body["spec"]["evaluationInterval"] = f"{INTERVAL}s"
    cluster.kube.create_object(body)


def _start(cluster: PrivateCluster, identity: str) -> OperatorProcess:
    operator = cluster.operator(
        identity,
        "--shards", str(SHARDS),
        "--shard-lease-duration", f"{LEASE_DURATION}s",
        "--shard-lease-namespace", LEASES,
    )  # fmt: skip
    operator.start()
    wait_for(operator.is_ready, timeout=60, what=f"{identity} /readyz")
    return operator


def _evaluated(operator: OperatorProcess) -> set[Key]:
    for family in metric_families(operator):
        if family.name == "slo_guard_state":
            return {(sample.labels["namespace"], sample.labels["slo"]) for sample in family.samples}
    return set()


def lease_holders(cluster: PrivateCluster) -> list[str]:
    """The holder of each shard Lease, without its per-process suffix (`replica-a-` for `replica-a-1f2e3d`)."""
    leases = cluster.kube.list_objects("coordination.k8s.io/v1", "Lease", namespace=LEASES)["items"]
    holders = [
        (lease.get("spec") or {}).get("holderIdentity") or ""
        for lease in leases
        if lease["metadata"]["name"].startswith("slo-guard-shard-")
    ]
    return [holder.rsplit("-", 1)[0] + "-" if holder else "" for holder in holders]


def _shards_of(cluster: PrivateCluster, identity: str) -> set[int]:
    leases = cluster.kube.list_objects("coordination.k8s.io/v1", "Lease", namespace=LEASES)["items"]
    return {
        int(lease["metadata"]["name"].split("-")[3])
        for lease in leases
        if lease["metadata"]["name"].startswith("slo-guard-shard-")
        and ((lease.get("spec") or {}).get("holderIdentity") or "").rsplit("-", 1)[0] == identity
    }


def _operator_writes(cluster: PrivateCluster, resource: str, name: str) -> list[str]:
    """User-Agents of the operator writes (patches) to one object of `resource` in the namespace."""
    records = cluster.emulator.requests(verb="patch", resource=resource, namespace=NAMESPACE, name=name)
    return [record.user_agent or "" for record in records if (record.user_agent or "").startswith("slo-guard/")]


def _assert_one_status_writer_per_slo(cluster: PrivateCluster, *, since: int) -> None:
    writers: dict[str, Counter[str]] = defaultdict(Counter)
    for record in cluster.emulator.requests()[since:]:
        if record.verb == "patch" and record.resource == "servicelevelobjectives" and record.subresource == "status":
            writers[record.name or ""][record.user_agent or ""] += 1
    assert len(writers) >= SLOS * 0.9, "the heartbeat made (almost) every SLO write its status in the window"
    shared = {name: dict(agents) for name, agents in writers.items() if len(agents) > 1}
    assert shared == {}, "each SLO's status is written by one replica"
