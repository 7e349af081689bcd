"""The ServiceLevelObjective custom resource: what users write, validated, and turned into domain types.

The pydantic models mirror crds/servicelevelobjectives.yaml field for field. Admission rejects what the CRD
schema and its CEL rules can see; these models are the second line of defence (and the only one for
`slo-guard evaluate` on files), and they also check what admission cannot: selector syntax, day-unit windows,
window relations.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from slo_guard.domain.display import budget_percent
from slo_guard.domain.durations import format_duration, parse_duration
from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import (
    BurnRateTier,
    Indicator,
    LatencyIndicator,
    Objective,
    Policy,
    PolicyAction,
    PolicyMode,
    PolicyTrigger,
    RatioIndicator,
    Severity,
    Target,
)
from slo_guard.domain.promql import BUCKET_LABEL
from slo_guard.domain.selectors import SelectorError, parse_selector
from slo_guard.domain.timestamps import rfc3339
from slo_guard.domain.windows import default_tiers

MIN_WINDOW = 60
"""Seconds: the shortest SLO window (tests and demos use minutes, production days)."""
MIN_EVALUATION_INTERVAL = 1
"""Seconds."""
MAX_EVALUATION_INTERVAL = 3600
"""Seconds."""
MAX_SELECTOR_LENGTH = 1024
MAX_TARGETS = 32
MAX_BURN_RATE_ALERTS = 8
SPEC_ERROR_LIMIT = 1000
"""Longest `str(SpecError)`: it becomes an Event message (at most 1024) and the Ready condition's message."""
_ECHO_LIMIT = 80
"""Longest echo of a user value in an error message, quotes included."""

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_PYDANTIC_PHRASING = re.compile(r"^(Input|String|List) should")
_NEAR_MISS = 0.75
"""difflib similarity above which an unknown field is taken for a typo of a real one."""

_Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field; `field` is the dotted path the user wrote: `spec.targets[1].name`."""

    field: str
    message: str
    """One line."""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """An invalid ServiceLevelObjective, with every problem found in `errors`, unknown fields first.

    `str()` joins them with `; ` within SPEC_ERROR_LIMIT characters (the rest counted as `and N more`), for the
    Ready condition and Events; `field` and `message` are the first problem's.
    """

    def __init__(self, *errors: FieldError) -> None:
        self.errors = tuple(FieldError(error.field, _LINE_BREAKS.sub(" ", error.message).strip()) for error in errors)
        self.field = self.errors[0].field
        self.message = self.errors[0].message
        super().__init__(_joined([str(error) for error in self.errors], limit=SPEC_ERROR_LIMIT))


def _joined(texts: Sequence[str], *, limit: int) -> str:
    """`; `-joined whole texts, as many as fit in `limit` with an `; and N more` tail counting the others."""
    shown = 0
    length = 0
    for text in texts:
        added = len(text) + (2 if shown else 0)
        if length + added + len(_more(len(texts) - shown - 1)) > limit:
            break
        shown += 1
        length += added
    if shown == 0:
        # The first text alone is too long (an unknown field's name can be any length): cut it.
        tail = _more(len(texts) - 1)
        return texts[0][: limit - len(tail) - 1] + "…" + tail
    return "; ".join(texts[:shown]) + _more(len(texts) - shown)


def _more(count: int) -> str:
    return f"; and {count} more" if count else ""


class _FieldProblems(ValueError):
    """Raised by a model validator about some of its fields, so each error names its field, not the model."""

    def __init__(self, *problems: tuple[_Location, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def _echo(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 3] + "..."


def _duration_between(minimum: int, maximum: int | None = None) -> AfterValidator:
    def check(text: str) -> str:
        seconds = parse_duration(text)
        if seconds < minimum:
            raise ValueError(f"must be at least {format_duration(minimum)} (got {_echo(text)})")
        if maximum is not None and seconds > maximum:
            raise ValueError(f"must be at most {format_duration(maximum)} (got {_echo(text)})")
        return text

    return AfterValidator(check)


def _check_selector(text: str) -> str:
    try:
        parse_selector(text)
    except SelectorError as err:
        # The parser quotes the whole selector, which may be 1 KiB long: echo it shortened like any value.
        raise ValueError(str(err).replace(repr(text), _echo(text))) from None
    return text


def _dns_name(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(text: str) -> str:
        if not pattern.fullmatch(text):
            raise ValueError(f"must be a {rule} (got {_echo(text)})")
        return text

    return AfterValidator(check)


_DURATION_LENGTH = Field(min_length=1, max_length=32)
SelectorText = Annotated[str, Field(min_length=1, max_length=MAX_SELECTOR_LENGTH), AfterValidator(_check_selector)]
DnsSubdomain = Annotated[
    str,
    Field(min_length=1, max_length=253),
    _dns_name(_DNS_SUBDOMAIN, "DNS subdomain: lowercase letters, digits, '-' and '.', alphanumeric at both ends"),
]
DnsLabel = Annotated[
    str,
    Field(min_length=1, max_length=63),
    _dns_name(_DNS_LABEL, "DNS label: lowercase letters, digits and '-', alphanumeric at both ends"),
]
PositiveFinite = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True, allow_inf_nan=False
    )


class RatioSpec(_Model):
    """`spec.indicator.ratio`: the SLI is 1 - rate(errors) / rate(total)."""

    errors: SelectorText
    """Series selector of the counter of failed events."""
    total: SelectorText
    """Series selector of the counter of all events."""

    def to_domain(self) -> RatioIndicator:
        return RatioIndicator(errors=parse_selector(self.errors), total=parse_selector(self.total))


class LatencySpec(_Model):
    """`spec.indicator.latency`: events at or under `threshold` seconds are good."""

    histogram: SelectorText
    """Histogram base name and matchers, without the `_bucket`/`_count` suffix."""
    threshold: PositiveFinite
    """Seconds; must equal one of the histogram's `le` bucket boundaries."""

    @model_validator(mode="after")
    def _base_name_without_buckets(self) -> Self:
        selector = parse_selector(self.histogram)
        problems: list[tuple[_Location, str]] = []
        if selector.metric.endswith("_bucket"):
            problems.append(
                (("histogram",), f"give the histogram's base name, without _bucket (got {_echo(selector.metric)})")
            )
        if any(matcher.name == BUCKET_LABEL for matcher in selector.matchers):
            problems.append(
                (("histogram",), f"must not match on {BUCKET_LABEL!r}: slo-guard selects the bucket from threshold")
            )
        if problems:
            raise _FieldProblems(*problems)
        return self

    def to_domain(self) -> LatencyIndicator:
        return LatencyIndicator(histogram=parse_selector(self.histogram), threshold=self.threshold)


class IndicatorSpec(_Model):
    """`spec.indicator`: exactly one of `ratio` or `latency`."""

    ratio: RatioSpec | None = None
    """Ratio of two counters."""
    latency: LatencySpec | None = None
    """Histogram under a latency threshold."""

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Self:
        if (self.ratio is None) == (self.latency is None):
            raise ValueError("set exactly one of ratio or latency")
        return self

    def to_domain(self) -> Indicator:
        chosen = self.ratio or self.latency
        assert chosen is not None  # guaranteed by _exactly_one_kind
        return chosen.to_domain()


class BurnRateAlertSpec(_Model):
    """One entry of `spec.burnRateAlerts`: fires when both windows burn budget faster than `factor`."""

    severity: Literal["page", "ticket"]
    """`page` tiers are the ones `policy.trigger: FastBurn` acts on."""
    long_window: Annotated[str, _DURATION_LENGTH, _duration_between(1)]
    """The window that makes the alert significant, e.g. 1h."""
    short_window: Annotated[str, _DURATION_LENGTH, _duration_between(1)]
    """The window that makes the alert reset quickly, e.g. 5m; shorter than `longWindow`."""
    factor: PositiveFinite
    """Burn rate both windows must exceed."""

    @model_validator(mode="after")
    def _short_inside_long(self) -> Self:
        if parse_duration(self.short_window) >= parse_duration(self.long_window):
            raise _FieldProblems(
                (
                    ("shortWindow",),
                    f"must be shorter than longWindow {self.long_window!r} (got {_echo(self.short_window)})",
                )
            )
        return self

    def to_domain(self) -> BurnRateTier:
        return BurnRateTier(
            severity=Severity(self.severity),
            long_window=parse_duration(self.long_window),
            short_window=parse_duration(self.short_window),
            factor=self.factor,
        )


class TargetSpec(_Model):
    """One entry of `spec.targets`: a workload in the SLO's own namespace."""

    kind: Literal["Deployment", "StatefulSet", "Rollout"]
    """The workload kind: apps/v1 Deployment or StatefulSet, or Argo Rollouts' argoproj.io/v1alpha1 Rollout."""
    name: DnsSubdomain
    """The workload's name."""


class PolicySpec(_Model):
    """`spec.policy`: what slo-guard does to the targets, and when it undoes it."""

    mode: Literal["Enforce", "DryRun"] = "Enforce"
    """Enforce acts on targets; DryRun only records what it would do."""
    action: Literal["Pause", "Scale", "Deny"] = "Pause"
    """Pause sets `spec.paused` on targets; Scale sets their replicas to `scaleTo`; Deny writes nothing and has the
    admission webhook refuse changes to their pod template."""
    trigger: Literal["Exhausted", "FastBurn"] = "Exhausted"
    """Act when the budget is spent, or as soon as a page tier fires."""
    scale_to: Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)] | None = None
    """Replicas while the policy holds the targets; required with action Scale, rejected otherwise."""
    resume_above: Annotated[float, Field(strict=True, ge=0, lt=1)] = 0.05
    """Fraction of the budget that must remain before the action is undone (hysteresis)."""

    @model_validator(mode="after")
    def _scale_to_with_scale_only(self) -> Self:
        if self.action == "Scale" and self.scale_to is None:
            raise _FieldProblems((("scaleTo",), "is required when action is Scale"))
        if self.action != "Scale" and self.scale_to is not None:
            raise _FieldProblems((("scaleTo",), f"is only allowed when action is Scale (action is {self.action!r})"))
        return self

    def to_domain(self) -> Policy:
        return Policy(
            mode=PolicyMode(self.mode),
            action=PolicyAction(self.action),
            trigger=PolicyTrigger(self.trigger),
            scale_to=self.scale_to,
            resume_above=self.resume_above,
        )


class ServiceLevelObjectiveSpec(_Model):
    """`spec` of a ServiceLevelObjective."""

    description: Annotated[str, Field(max_length=1024)] | None = None
    """Free text for humans; slo-guard does not read it."""
    objective: Annotated[float, Field(strict=True, gt=0, lt=100)]
    """Percent of good events over the window, e.g. 99.9."""
    window: Annotated[str, _DURATION_LENGTH, _duration_between(MIN_WINDOW)]
    """Rolling SLO window as a Prometheus duration, at least 1m."""
    indicator: IndicatorSpec
    """How good and total events are counted."""
    burn_rate_alerts: (
        Annotated[list[BurnRateAlertSpec], Field(min_length=1, max_length=MAX_BURN_RATE_ALERTS)] | None
    ) = None
    """Multi-window burn-rate tiers; None means the SRE-workbook tiers scaled to `window`."""
    evaluation_interval: Annotated[
        str, _DURATION_LENGTH, _duration_between(MIN_EVALUATION_INTERVAL, MAX_EVALUATION_INTERVAL)
    ] = "30s"
    """Time between evaluations, 1s to 1h."""
    targets: Annotated[list[TargetSpec], Field(max_length=MAX_TARGETS)] = Field(default_factory=list)
    """Workloads in the SLO's namespace the policy acts on."""
    policy: PolicySpec = Field(default_factory=PolicySpec)
    """The error-budget policy."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = [*self._duplicate_targets(), *self._alert_windows_too_long(), *self._fast_burn_without_page()]
        if problems:
            raise _FieldProblems(*problems)
        return self

    def _duplicate_targets(self) -> list[tuple[_Location, str]]:
        problems: list[tuple[_Location, str]] = []
        seen: set[tuple[str, str]] = set()
        for index, target in enumerate(self.targets):
            if (target.kind, target.name) in seen:
                problems.append((("targets", index), f"duplicate target {target.kind}/{target.name}"))
            seen.add((target.kind, target.name))
        return problems

    def _alert_windows_too_long(self) -> list[tuple[_Location, str]]:
        window = parse_duration(self.window)
        return [
            (
                ("burnRateAlerts", index, "longWindow"),
                f"must not be longer than window {self.window!r} (got {_echo(alert.long_window)})",
            )
            for index, alert in enumerate(self.burn_rate_alerts or ())
            if parse_duration(alert.long_window) > window
        ]

    def _fast_burn_without_page(self) -> list[tuple[_Location, str]]:
        alerts = self.burn_rate_alerts
        if self.policy.trigger == "FastBurn" and alerts and all(a.severity != "page" for a in alerts):
            return [(("burnRateAlerts",), "policy.trigger FastBurn needs at least one entry with severity page")]
        return []


class ObjectMeta(BaseModel):
    """The part of `metadata` slo-guard reads. Kubernetes owns the rest (uid, labels, managedFields...)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: DnsSubdomain
    """The SLO's name."""
    namespace: DnsLabel = "default"
    """The SLO's namespace, which is also its targets' namespace; `default` when absent, like kubectl."""


class ServiceLevelObjectiveResource(_Model):
    """A whole `sloguard.io/v1alpha1` ServiceLevelObjective object."""

    api_version: Literal["sloguard.io/v1alpha1"]
    """Always sloguard.io/v1alpha1."""
    kind: Literal["ServiceLevelObjective"]
    """Always ServiceLevelObjective."""
    metadata: ObjectMeta
    """Name and namespace."""
    spec: ServiceLevelObjectiveSpec
    """What the user asks for."""
    status: dict[str, object] | None = None
    """Written by slo-guard; never read as input."""

    def to_objective(self, *, min_step: int) -> Objective:
        """The domain Objective; tiers default to the SRE-workbook ones scaled to the window."""
        spec = self.spec
        window = parse_duration(spec.window)
        return Objective(
            name=self.metadata.name,
            namespace=self.metadata.namespace,
            objective=_fraction(spec.objective),
            window=window,
            indicator=spec.indicator.to_domain(),
            tiers=_tiers(spec, window=window, min_step=min_step),
            evaluation_interval=parse_duration(spec.evaluation_interval),
            targets=tuple(Target(kind=target.kind, name=target.name) for target in spec.targets),
            policy=spec.policy.to_domain(),
        )


def _fraction(percent: float) -> float:
    """99.9 -> 0.999 exactly as written (plain division gives 0.9990000000000001)."""
    return float(Decimal(repr(percent)) / 100)


def _tiers(spec: ServiceLevelObjectiveSpec, *, window: int, min_step: int) -> tuple[BurnRateTier, ...]:
    if spec.burn_rate_alerts is None:
        return default_tiers(window, min_step=min_step)
    shortest = 2 * min_step
    # The same floor default_tiers keeps: a rate() over fewer than two samples is no data.
    too_short = [
        FieldError(
            f"spec.burnRateAlerts[{index}].shortWindow",
            f"must be at least {format_duration(shortest)}, twice the operator's min step"
            f" (got {_echo(alert.short_window)})",
        )
        for index, alert in enumerate(spec.burn_rate_alerts)
        if parse_duration(alert.short_window) < shortest
    ]
    if too_short:
        raise SpecError(*too_short)
    return tuple(alert.to_domain() for alert in spec.burn_rate_alerts)


def objective_from_resource(resource: Mapping[str, object], *, min_step: int) -> Objective:
    """Validate a ServiceLevelObjective object (as kopf or a YAML file gives it); raises SpecError only."""
    try:
        parsed = ServiceLevelObjectiveResource.model_validate(resource, by_alias=True, by_name=False)
    except ValidationError as err:
        raise SpecError(*_field_errors(err, resource)) from None
    return parsed.to_objective(min_step=min_step)


def _field_errors(error: ValidationError, resource: Mapping[str, object]) -> list[FieldError]:
    """Every problem, unknown fields first: a typo also makes its field missing, and the typo is the news."""
    unknown: list[FieldError] = []
    meant: set[_Location] = set()
    for details in error.errors():
        if details["type"] == "extra_forbidden":
            *parent, key = details["loc"]
            suggestion = _near_miss(str(key), parent=tuple(parent), resource=resource)
            if suggestion is None:
                message = "unknown field (field names are camelCase, as in docs/spec.md)"
            else:
                message = f"unknown field; did you mean {suggestion!r}?"
                meant.add((*parent, suggestion))
            unknown.append(FieldError(_dotted(details["loc"]), message))
    others = [
        FieldError(_dotted(location) or "object", message)
        for details in error.errors()
        if details["type"] != "extra_forbidden" and not (details["type"] == "missing" and details["loc"] in meant)
        for location, message in _describe(details)
    ]
    return [*unknown, *others]


def _near_miss(key: str, *, parent: _Location, resource: Mapping[str, object]) -> str | None:
    """The field at `parent` that `key` most likely misspells, among those not set there already."""
    node: Any = resource
    for part in parent:
        node = node[part]
    candidates = {_loose(name): name for name in _field_names(parent) if name not in node}
    matches = difflib.get_close_matches(_loose(key), candidates, n=1, cutoff=_NEAR_MISS)
    return candidates[matches[0]] if matches else None


def _loose(name: str) -> str:
    """Spelling that ignores case and separators, so `scale_to` is `scaleTo`."""
    return name.lower().replace("_", "").replace("-", "")


def _field_names(location: _Location) -> list[str]:
    """The field names, as users write them, of the model at `location` in a resource."""
    model: type[BaseModel] = ServiceLevelObjectiveResource
    for part in location:
        if isinstance(part, str):  # an index keeps the list's item model
            inner = _model_in(_by_alias(model)[part].annotation)
            assert inner is not None  # only models forbid extra fields, so every step on the way is one
            model = inner
    return list(_by_alias(model))


def _by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model in an annotation such as `Annotated[list[BurnRateAlertSpec], ...] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = (_model_in(argument) for argument in get_args(annotation))
    return next((model for model in models if model is not None), None)


def _describe(details: ErrorDetails) -> list[tuple[_Location, str]]:
    location = details["loc"]
    cause = details.get("ctx", {}).get("error")
    if isinstance(cause, _FieldProblems):
        return [((*location, *where), message) for where, message in cause.problems]
    if isinstance(cause, ValueError):
        return [(location, str(cause))]
    if details["type"] == "missing":
        return [(location, "is required")]
    if details["type"] in {"model_type", "model_attributes_type", "dict_type"}:
        return [(location, f"must be a mapping (got {_echo(details['input'])})")]
    message = _PYDANTIC_PHRASING.sub("must", details["msg"]).replace(" after validation", "")
    return [(location, f"{message} (got {_echo(details['input'])})")]


def _dotted(location: Sequence[str | int]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def status_from_evaluation(evaluation: Evaluation, *, digits: int) -> dict[str, object]:
    """The `.status` fields an evaluation determines, numbers rounded to `digits` significant digits.

    Every key is always present and None stays null, so a JSON merge patch also clears values from an earlier
    evaluation (`reason` is null unless the state is Unknown).
    """
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    unknown = evaluation.state is State.UNKNOWN
    remaining = _round(evaluation.budget_remaining, digits)
    return {
        "state": evaluation.state.value,
        "reason": evaluation.reason.value if unknown and evaluation.reason is not None else None,
        "message": evaluation.message,
        "sli": _round_sli(evaluation.sli, digits),
        "errorBudget": {
            "remaining": remaining,
            "consumed": _round(evaluation.budget_consumed, digits),
            # For people (kubectl's Budget column); the fractions above are for machines.
            "display": budget_percent(remaining),
        },
        "burnRates": _burn_rates(evaluation.burn_rates, digits),
        "alerts": [
            {
                "severity": alert.severity.value,
                "longWindow": format_duration(alert.long_window),
                "shortWindow": format_duration(alert.short_window),
                "factor": _round(alert.factor, digits),
                "firing": alert.firing,
            }
            for alert in evaluation.alerts
        ],
        "timeToExhaustion": _round(evaluation.time_to_exhaustion, digits),
        "evaluatedAt": rfc3339(evaluation.evaluated_at),
    }


def _round(value: float | None, digits: int) -> float | None:
    # JSON has no NaN or infinity, and the API server would reject the whole status.
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _round_sli(sli: float | None, digits: int) -> float | None:
    """Round the error ratio 1 - sli instead: 0.99951234 keeps 0.999512, where plain rounding would say 1."""
    error_ratio = None if sli is None else _round(1.0 - sli, digits)
    return None if error_ratio is None else float(1 - Decimal(repr(error_ratio)))


def _burn_rates(rates: Mapping[int, float | None] | None, digits: int) -> dict[str, float | None] | None:
    if rates is None:
        return None
    return {format_duration(window): _round(rate, digits) for window, rate in sorted(rates.items())}
