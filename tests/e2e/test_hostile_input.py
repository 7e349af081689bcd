"""Hostile and broken input under the running operator: specs only slo-guard rejects, oversized, unicode and junk
objects, the most targets the schema allows, and a burst of 1,000 SLOs.

A broken SLO must get Ready=False and one Event, both naming the field, without slowing the healthy SLOs next to it;
odd but valid input must be evaluated like any other; a burst must not crash the operator nor grow it without bound.
The module scrapes two services of its own (always healthy, always failing) instead of taking them from the shared
pool. Each scenario runs in its own namespace, deleted afterwards.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import summary_lines
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    SLO_API,
    SLO_KIND,
    Sources,
    condition,
    delete_namespace,
    deploy,
    guard,
    is_paused,
    matching_samples,
    metric_families,
    namespace_for,
    one_target,
    own_sources,
    repeating,
    slo,
    slo_status,
    wait_healthy,
)
from tests.support.exporter import SyntheticService
from tests.support.kube import ApiStatusError, EmulatorClient

from slo_guard.domain.durations import format_duration
from slo_guard.handlers.runtime import DEFAULT_INTERVAL
from slo_guard.service.schedule import phase_offset

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

Spec = dict[str, Any]
"""An SLO's `spec`, as sent."""
CADENCE_PASSES = 8
"""Passes each healthy SLO must complete in a measured window (at 1 s per pass: about 8 s)."""
CADENCE_TIMEOUT = 60
"""Seconds a measured window may take before the cadence counts as lost."""
BURST = 1000
"""SLOs created back to back in the burst scenario."""
BURST_INTERVAL = "2m"
"""Evaluation interval of the burst SLOs. First passes spread over it (phase offsets); each new SLO costs two writes
(its status and a State Event) against the operator's 20 writes/s, so over 2 min the burst asks 16.7 writes/s and
stays within budget. At 1m the writes queue up and starve the other SLOs' passes (see the report)."""
BURST_TIMEOUT = 300
"""Seconds for every burst SLO to get a status and, separately, to be deleted."""
MANIFEST_MEMORY_LIMIT = 512 * 2**20
"""Bytes: manifests/operator/deployment.yaml limits the operator to 512Mi; above it the pod is OOM-killed."""
LIVENESS_BUDGET = 60.0
"""Seconds /healthz may fail in a row before the manifest's liveness probe (3 x 20 s) restarts the operator."""
SLOW_INTERVAL = 7200
"""Seconds: an evaluationInterval past the 1 h maximum, which only CEL (not the structural schema) refuses."""
UNICODE = 'Zürich-東京-🚀 "quoted" \\ back'
"""Multi-byte characters, a quote and a backslash: what every free-text field of the odd SLO is made of."""
ANNOTATION_LIMIT = 256 * 1024
"""Bytes: the API server refuses an object whose annotations (keys and values) add up to more."""
ANNOTATION_BYTES = 200 * 1024
"""Bytes of annotations on the oversized SLO, below ANNOTATION_LIMIT."""
MEASURED = summary_lines("slo-guard: hostile input")


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    with own_sources(world) as sources:
        yield sources


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    name = namespace_for(request, "hi")
    world.kube.ensure_namespace(name)
    yield name
    delete_namespace(world, name)


def _ready(world: World, namespace: str, name: str) -> dict[str, Any]:
    return condition(slo_status(world, namespace, name), "Ready")


def _wait_not_ready(world: World, namespace: str, name: str, *, timeout: float) -> dict[str, Any]:
    """The Ready condition once it is False."""
    ready: dict[str, Any] = wait_for(
        lambda: (now := _ready(world, namespace, name)).get("status") == "False" and now,
        timeout=timeout,
        what=f"{name}: Ready=False",
    )
    return ready


def _passes(emulator: EmulatorClient, namespace: str, target: str) -> int:
    """Completed-or-started passes of the SLO acting on `target`: every pass reads each of its targets once."""
    return len(emulator.requests(verb="get", resource="deployments", namespace=namespace, name=target))


def _pass_rate(emulator: EmulatorClient, namespace: str, targets: list[str]) -> float:
    """Passes per second per SLO over a window of CADENCE_PASSES passes of the slowest one."""
    start = {target: _passes(emulator, namespace, target) for target in targets}
    started = time.monotonic()
    wait_for(
        lambda: all(_passes(emulator, namespace, target) >= start[target] + CADENCE_PASSES for target in targets),
        timeout=CADENCE_TIMEOUT,
        what=f"{CADENCE_PASSES} passes of each healthy SLO",
    )
    return CADENCE_PASSES / (time.monotonic() - started)


@dataclass(frozen=True)
class BrokenSpec:
    """A spec the CRD's structural schema admits (the emulator applies no CEL) and slo-guard rejects."""

    name: str
    """Name of the SLO."""
    field: str
    """The field the condition and the Event must name."""
    breaks: Callable[[Spec], None]
    """Turns a valid spec into this broken one, in place."""


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return apply


def _inject_into_errors(spec: Spec) -> None:
    spec["indicator"]["ratio"]["errors"] += " or vector(1)"


BROKEN = [
    BrokenSpec("promql-injection", "spec.indicator.ratio.errors", _inject_into_errors),
    BrokenSpec("short-window", "spec.window", _set("window", "30s")),
    BrokenSpec("fractional-interval", "spec.evaluationInterval", _set("evaluationInterval", "1500ms")),
    BrokenSpec(
        "duplicate-target",
        "spec.targets[1]",
        _set("targets", [{"kind": "Deployment", "name": "twice"}, {"kind": "Deployment", "name": "twice"}]),
    ),
    BrokenSpec(
        "scale-to-with-pause",
        "spec.policy.scaleTo",
        _set("policy", {"mode": "Enforce", "action": "Pause", "scaleTo": 2}),
    ),
    BrokenSpec(
        "alert-windows-equal",
        "spec.burnRateAlerts[0].shortWindow",
        _set("burnRateAlerts", [{"severity": "page", "longWindow": "1m", "shortWindow": "1m", "factor": 14.4}]),
    ),
]
"""`fractional-interval` passes even a real API server's CEL rules (1500ms is between 1s and 1h)."""


def _broken_slo(namespace: str, source: SyntheticService, broken: BrokenSpec) -> dict[str, Any]:
    body = slo(broken.name, namespace, source, targets=one_target("untouchable"))
    broken.breaks(body["spec"])
    return body


def _invalid_spec_events(emulator: EmulatorClient, namespace: str, name: str) -> list[str]:
    created = emulator.requests(verb="create", resource="events", namespace=namespace)
    return [
        record.body["message"]
        for record in created
        if record.status == 201
        and record.body["involvedObject"]["name"] == name
        and record.body["reason"] == "InvalidSpec"
    ]


def test_broken_slos_are_rejected_by_field_while_healthy_ones_keep_their_cadence(
    world: World, sources: Sources, namespace: str
) -> None:
    emulator = world.need_emulator()
    steady = ["steady-a", "steady-b"]
    for name in steady:
        guard(world, namespace, name, sources.healthy)
    for name in steady:
        wait_healthy(world, namespace, name)
    alone = _pass_rate(emulator, namespace, steady)

    for broken in BROKEN:
        world.kube.create_object(_broken_slo(namespace, sources.healthy, broken))
    for broken in BROKEN:
        ready = _wait_not_ready(world, namespace, broken.name, timeout=ACT_TIMEOUT)
        assert ready["reason"] == "InvalidSpec"
        assert ready["message"].startswith(broken.field + ":"), ready["message"]
        assert slo_status(world, namespace, broken.name)["reason"] == "InvalidSpec"
    with_broken = _pass_rate(emulator, namespace, steady)

    for broken in BROKEN:
        messages = _invalid_spec_events(emulator, namespace, broken.name)
        assert len(messages) == 1, f"{broken.name}: one InvalidSpec Event, got {messages}"
        assert messages[0].startswith(broken.field + ":")
    for name in steady:
        assert slo_status(world, namespace, name)["state"] == "Healthy"
        assert _ready(world, namespace, name)["status"] == "True"
    assert emulator.requests(verb="patch", resource="deployments", namespace=namespace) == [], "nothing acted on"
    MEASURED.append(
        f"cadence of 2 healthy 1 s SLOs: {alone:.2f} passes/s each alone, "
        f"{with_broken:.2f} with {len(BROKEN)} broken SLOs beside them"
    )


def _slow_name(namespace: str) -> str:
    """A name whose first pass comes late at the spec's 2 h interval and early at the 30 s fallback, so the test
    passes fast, and fails fast should the unvalidated interval schedule the first pass again."""
    names = (f"slow-interval-{index}" for index in range(1000))
    return next(
        name
        for name in names
        if phase_offset(f"{namespace}/{name}", SLOW_INTERVAL) > 600
        and phase_offset(f"{namespace}/{name}", DEFAULT_INTERVAL) < 5
    )


def test_interval_beyond_the_limit_is_reported_promptly(world: World, sources: Sources, namespace: str) -> None:
    name = _slow_name(namespace)
    world.kube.create_object(
        _broken_slo(
            namespace,
            sources.healthy,
            BrokenSpec(name, "spec.evaluationInterval", _set("evaluationInterval", format_duration(SLOW_INTERVAL))),
        )
    )
    ready = _wait_not_ready(world, namespace, name, timeout=20)
    assert ready["message"].startswith("spec.evaluationInterval:")


@pytest.mark.parametrize(
    ("field_path", "breaks"),
    [
        ("spec.targets[0].kind", _set("targets", [{"kind": "DaemonSet", "name": "agent"}])),
        ("spec.targets", _set("targets", [{"kind": "Deployment", "name": f"t{i}"} for i in range(33)])),
        ("spec.objective", _set("objective", 100)),
        ("spec.indicator.ratio.errors", _set("indicator.ratio.errors", "x" * 1025)),
    ],
    ids=["unknown-kind", "33-targets", "objective-100", "long-selector"],
)
def test_the_schema_refuses_what_it_can_see(
    world: World, sources: Sources, namespace: str, field_path: str, breaks: Callable[[Spec], None]
) -> None:
    """Refused at admission (422 naming the field), so the operator never sees it."""
    body = slo("refused", namespace, sources.healthy, targets=[])
    breaks(body["spec"])
    with pytest.raises(ApiStatusError) as refused:
        world.kube.create_object(body)
    assert refused.value.status == 422
    causes = [cause.get("field") for cause in refused.value.body["details"]["causes"]]
    assert field_path in causes
    assert world.objects(SLO_API, SLO_KIND, namespace) == []


def _nested(depth: int) -> dict[str, Any]:
    junk: dict[str, Any] = {"leaf": UNICODE}
    for level in range(depth):
        junk = {f"level{level}": junk, "list": [1, "two", None]}
    return junk


def _oversized_slo(namespace: str, source: SyntheticService) -> dict[str, Any]:
    """Valid, but as large and odd as Kubernetes lets it be: every user string carries quotes, escapes and unicode."""
    body = slo("oversized", namespace, source, targets=one_target("oversized"))
    value = (UNICODE * 200)[:4000]
    count = ANNOTATION_BYTES // len(value.encode())
    body["metadata"]["annotations"] = {f"example.com/note-{index}": value for index in range(count)}
    body["metadata"]["labels"] = {f"example.com/label-{index}": "v" * 63 for index in range(20)}
    body["metadata"]["junk"] = _nested(50)
    spec = body["spec"]
    spec["description"] = (UNICODE * 40)[:1024]
    # A label value that looks like PromQL: it must reach Prometheus as a value (re-quoted), never as syntax.
    hostile_value = '\\"} or vector(1) # ' + "ünïcødé 🚀 東京 \\\\ \\n " * 20
    for key in ("errors", "total"):
        selector = spec["indicator"]["ratio"][key]
        spec["indicator"]["ratio"][key] = selector[:-1] + f',path!="{hostile_value}"}}'
        assert len(spec["indicator"]["ratio"][key]) <= 1024
    spec["junk"] = _nested(100)
    spec["indicator"]["ratio"]["junk"] = _nested(10)
    body["status"] = {"state": "Exhausted", "junk": _nested(10)}
    return body


def test_oversized_unicode_and_junk_input_is_evaluated_like_any_other(
    world: World, sources: Sources, namespace: str
) -> None:
    deploy(world, namespace, "oversized")
    body = _oversized_slo(namespace, sources.healthy)
    size = len(json.dumps(body, ensure_ascii=False).encode())
    created = world.kube.create_object(body)

    assert "junk" not in created["spec"], "unknown fields are pruned by the structural schema"
    assert "junk" not in created["spec"]["indicator"]["ratio"]
    assert "status" not in created or "junk" not in (created["status"] or {})
    status = wait_healthy(world, namespace, "oversized")
    assert condition(status, "DataAvailable")["status"] == "True", "the hostile label value matched as a value"
    assert status["sli"] == 1.0
    assert not is_paused(world, namespace, "oversized")
    stored = world.get(SLO_API, SLO_KIND, "oversized", namespace)
    assert stored is not None
    annotations = stored["metadata"]["annotations"]
    assert all(annotations[key] == value for key, value in body["metadata"]["annotations"].items())
    MEASURED.append(f"oversized SLO: {size / 1024:.0f} KiB sent, evaluated Healthy")


def _annotation_bytes(annotations: dict[str, str]) -> int:
    """What the API server counts against its annotation limit: key and value bytes."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())


def test_the_operator_keeps_an_slo_under_the_annotation_limit(world: World, sources: Sources, namespace: str) -> None:
    body = _oversized_slo(namespace, sources.healthy)
    assert _annotation_bytes(body["metadata"]["annotations"]) <= ANNOTATION_LIMIT
    world.kube.create_object(body)
    wait_for(lambda: slo_status(world, namespace, "oversized"), timeout=ACT_TIMEOUT, what="a status")
    stored = world.get(SLO_API, SLO_KIND, "oversized", namespace)
    assert stored is not None
    total = _annotation_bytes(stored["metadata"]["annotations"])
    assert total <= ANNOTATION_LIMIT, f"{total} bytes of annotations after the operator handled the SLO"


def test_the_most_targets_the_schema_allows_are_each_paused_once(
    world: World, sources: Sources, namespace: str
) -> None:
    emulator = world.need_emulator()
    names = [f"shard-{index:02d}" for index in range(32)]
    for name in names:
        deploy(world, namespace, name)
    started = time.monotonic()
    world.kube.create_object(
        slo("fleet", namespace, sources.failing, targets=[{"kind": "Deployment", "name": name} for name in names])
    )
    wait_for(
        lambda: [t["state"] for t in slo_status(world, namespace, "fleet").get("targets") or []] == ["Paused"] * 32,
        timeout=ACT_TIMEOUT,
        what="all 32 targets Paused in status",
    )
    seconds = time.monotonic() - started

    for name in names:
        assert is_paused(world, namespace, name)
        patches = emulator.requests(verb="patch", resource="deployments", namespace=namespace, name=name)
        assert [record.status for record in patches] == [200], f"{name}: one PATCH"
    created = emulator.requests(verb="create", resource="events", namespace=namespace)
    about_targets = [
        record.body["involvedObject"]["name"]
        for record in created
        if record.body["involvedObject"]["kind"] == "Deployment"
    ]
    assert sorted(about_targets) == names, "one Event per target"
    MEASURED.append(f"32 targets: all paused (32 PATCHes, {len(created)} Events) in {seconds:.1f} s")


def _burst_slo(namespace: str, source: SyntheticService) -> dict[str, Any]:
    body = slo("burst", namespace, source, targets=[])
    # One page tier: 5 queries a pass instead of the default tiers' dozen.
    body["spec"]["burnRateAlerts"] = [{"severity": "page", "longWindow": "1m", "shortWindow": "10s", "factor": 14.4}]
    body["spec"]["evaluationInterval"] = BURST_INTERVAL
    return body


def _operator_pid(world: World) -> int:
    """The `slo-guard run` process serving the shared world's health port."""
    port_flag = ["--health-port", str(world.operator.health_port)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "slo_guard" in argv and any(argv[i : i + 2] == port_flag for i in range(len(argv))):
            return int(proc.name)
    raise AssertionError("the operator process is not running")


def _rss(pid: int) -> int:
    """Bytes of resident memory (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Watchdog:
    """Samples the operator's /healthz and RSS in the background while a burst runs."""

    world: World
    """Whose operator to watch."""
    pid: int
    """The operator's process id."""
    peak_rss: int = 0
    """Bytes: the largest VmRSS sampled."""
    samples: int = 0
    """/healthz answers sampled."""
    failures: int = 0
    """Samples that were not 200."""
    longest_failure: float = 0.0
    """Seconds: the longest run of failed samples."""
    first_failure: str = ""
    """The first failing answer (it names the stalled SLOs)."""
    failing_since: float | None = None
    """time.monotonic() of the first sample in the current run of failed ones; None after a healthy sample."""

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, _rss(self.pid))
        self.samples += 1
        if self.healthy():
            self.failing_since = None
            return
        self.failures += 1
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        self.longest_failure = max(self.longest_failure, now - self.failing_since)

    def healthy(self) -> bool:
        """Whether /healthz answers 200 now; the first failing answer is kept."""
        try:
            with urllib.request.urlopen(self.world.operator.health_url + "/healthz", timeout=5) as response:  # noqa: S310
                return bool(response.status == 200)
        except urllib.error.HTTPError as error:
            self.first_failure = self.first_failure or error.read().decode(errors="replace").strip()
            return False
        except OSError as error:
            self.first_failure = self.first_failure or str(error)
            return False

    @contextmanager
    def watching(self) -> Iterator[Watchdog]:
        with repeating(self.sample, every=0.5, name="burst-watchdog"):
            yield self


def _with_status(world: World, namespace: str) -> int:
    return sum(1 for item in world.objects(SLO_API, SLO_KIND, namespace) if item.get("status"))


def test_a_burst_of_1000_slos_gets_statuses_without_crashing_or_bloating_the_operator(
    world: World, sources: Sources
) -> None:
    """A 1 s bystander SLO shares the operator (and its write budget) with the burst; its passes are counted."""
    emulator = world.need_emulator()
    namespace = "hi-burst"
    guard(world, namespace, "bystander", sources.healthy)
    wait_healthy(world, namespace, "bystander")
    pid = _operator_pid(world)
    before = _rss(pid)
    bystander_before = _passes(emulator, namespace, "bystander")
    template = _burst_slo(namespace, sources.healthy)
    with Watchdog(world, pid).watching() as watchdog:
        started = time.monotonic()
        try:
            for index in range(BURST):
                body = copy.deepcopy(template)
                body["metadata"]["name"] = f"burst-{index:04d}"
                world.kube.create_object(body)
            created = time.monotonic() - started
            wait_for(
                lambda: _with_status(world, namespace) == BURST + 1,
                timeout=BURST_TIMEOUT,
                what=f"a status on all {BURST} SLOs",
                every=2,
            )
            all_status = time.monotonic() - started
            bystander_rate = (_passes(emulator, namespace, "bystander") - bystander_before) / all_status
            loaded = _rss(pid)
        finally:
            deleting = time.monotonic()
            delete_namespace(world, namespace, timeout=BURST_TIMEOUT)
            deleted = time.monotonic() - deleting
    wait_for(
        lambda: _state_series(world, namespace) == 0,
        timeout=ACT_TIMEOUT,
        what="the deleted SLOs' metric series dropped",
    )
    after = _rss(pid)

    assert _operator_pid(world) == pid, "the operator never restarted"
    assert watchdog.peak_rss < MANIFEST_MEMORY_LIMIT
    assert watchdog.longest_failure < LIVENESS_BUDGET, "the liveness probe would have restarted the operator"
    wait_for(watchdog.healthy, timeout=ACT_TIMEOUT, what="/healthz 200 after the burst")
    mib = 2**20
    MEASURED.extend(
        [
            f"burst of {BURST} SLOs (evaluationInterval {BURST_INTERVAL}): created in {created:.1f} s, "
            f"all with a status after {all_status:.1f} s, deleted in {deleted:.1f} s; "
            f"the 1 s bystander kept {bystander_rate:.2f} passes/s",
            f"operator RSS: {before / mib:.0f} MiB before, {loaded / mib:.0f} MiB with {BURST} SLOs, "
            f"peak {watchdog.peak_rss / mib:.0f} MiB, {after / mib:.0f} MiB after deleting them",
            f"/healthz during the burst: {watchdog.failures} of {watchdog.samples} samples failed, "
            f"longest failure {watchdog.longest_failure:.1f} s {watchdog.first_failure[:200]}",
        ]
    )


def _state_series(world: World, namespace: str) -> int:
    """slo_guard_state series the operator still exports for SLOs in `namespace`."""
    return len(matching_samples(metric_families(world.operator), "slo_guard_state", namespace=namespace))


def test_passes_waiting_for_the_write_limiter_keep_healthz_green(
    world: World, sources: Sources, namespace: str
) -> None:
    """Three SLOs pausing 32 targets each queue about 300 writes (13 s at 20/s), far beyond their 3 s grace."""
    fleets = {f"fleet-{fleet}": [f"f{fleet}-{index:02d}" for index in range(32)] for fleet in range(3)}
    for names in fleets.values():
        for name in names:
            deploy(world, namespace, name)
    with Watchdog(world, _operator_pid(world)).watching() as watchdog:
        for fleet, names in fleets.items():
            targets = [{"kind": "Deployment", "name": name} for name in names]
            world.kube.create_object(slo(fleet, namespace, sources.failing, targets=targets))
        wait_for(
            lambda: all(
                [t["state"] for t in slo_status(world, namespace, fleet).get("targets") or []] == ["Paused"] * 32
                for fleet in fleets
            ),
            timeout=CADENCE_TIMEOUT * 2,
            what="all 96 targets Paused in status",
        )
    assert watchdog.longest_failure < 2.0, (
        f"/healthz failed for {watchdog.longest_failure:.1f} s: {watchdog.first_failure}"
    )
