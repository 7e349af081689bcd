"""Domain types: what an SLO is once validated, independent of Kubernetes and Prometheus clients."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

GROUP = "sloguard.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ServiceLevelObjective"
PLURAL = "servicelevelobjectives"
"""The custom resource's identity, shared by the CRD model, the kopf handlers and the Kubernetes adapter."""


class MatchOp(enum.StrEnum):
    """PromQL label-matcher operators."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One `name<op>"value"` matcher; `value` is the unescaped literal."""

    name: str
    op: MatchOp
    value: str


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed series selector: a metric name plus label matchers, nothing else."""

    metric: str
    matchers: tuple[LabelMatcher, ...] = ()


@dataclass(frozen=True, slots=True)
class RatioIndicator:
    """SLI from two counters: errors over total."""

    errors: Selector
    total: Selector


@dataclass(frozen=True, slots=True)
class LatencyIndicator:
    """SLI from a histogram: requests at or under `threshold` seconds are good."""

    histogram: Selector
    threshold: float


Indicator = RatioIndicator | LatencyIndicator


class Severity(enum.StrEnum):
    PAGE = "page"
    TICKET = "ticket"


@dataclass(frozen=True, slots=True)
class BurnRateTier:
    """A multi-window burn-rate alert: fires when both windows burn faster than `factor`."""

    severity: Severity
    long_window: int
    """Seconds."""
    short_window: int
    """Seconds."""
    factor: float


class PolicyMode(enum.StrEnum):
    ENFORCE = "Enforce"
    DRY_RUN = "DryRun"


class PolicyAction(enum.StrEnum):
    PAUSE = "Pause"
    SCALE = "Scale"
    DENY = "Deny"
    """Write nothing to the targets; the admission webhook refuses changes to their pod template instead."""


class PolicyTrigger(enum.StrEnum):
    EXHAUSTED = "Exhausted"
    FAST_BURN = "FastBurn"


@dataclass(frozen=True, slots=True)
class Policy:
    """The error-budget policy: what to do to the targets, and when to undo it."""

    mode: PolicyMode = PolicyMode.ENFORCE
    action: PolicyAction = PolicyAction.PAUSE
    trigger: PolicyTrigger = PolicyTrigger.EXHAUSTED
    scale_to: int | None = None
    resume_above: float = 0.05
    """Fraction of the error budget that must remain before the action is undone."""


TARGET_API_VERSIONS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Rollout": "argoproj.io/v1alpha1"}
"""Every workload kind a target may name, with the apiVersion slo-guard reads and writes it in."""


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    """One of TARGET_API_VERSIONS."""
    name: str

    @property
    def api_version(self) -> str:
        return TARGET_API_VERSIONS[self.kind]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Objective:
    """A validated ServiceLevelObjective."""

    name: str
    namespace: str
    objective: float
    """Fraction of good events, e.g. 0.999."""
    window: int
    """The rolling SLO window in seconds."""
    indicator: Indicator
    tiers: tuple[BurnRateTier, ...]
    evaluation_interval: int = 30
    """Seconds between evaluations."""
    targets: tuple[Target, ...] = ()
    policy: Policy = field(default_factory=Policy)

    @property
    def key(self) -> str:
        """`namespace/name`, the identity used in annotations and logs."""
        return f"{self.namespace}/{self.name}"

    @property
    def error_budget(self) -> float:
        return 1.0 - self.objective
