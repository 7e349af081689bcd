"""Pyrra: `pyrra.dev/v1alpha1` ServiceLevelObjective resources (and the same objects in Pyrra's config files).

`target` is a string of percent and `window` a Prometheus duration; `indicator.ratio` and `indicator.latency`
name series selectors, not queries, which Pyrra wraps in `sum(rate(...))` itself. Alerting settings are not
carried over: slo-guard computes its own burn-rate tiers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from slo_guard.domain.durations import DurationError, format_duration, parse_duration
from slo_guard.domain.model import Selector
from slo_guard.domain.selectors import SelectorError, parse_selector
from slo_guard.importers.common import (
    Draft,
    ImportOptions,
    Outcome,
    Parts,
    Refusal,
    Source,
    description,
    dns_name,
    finish,
    kubernetes_labels,
    location,
    mapping,
    namespace,
    percent,
    sequence,
    shown,
    text,
)
from slo_guard.importers.indicators import dropped_grouping, latency, ratio

DESCRIPTION = "Pyrra ServiceLevelObjectives (pyrra.dev/v1alpha1)"
_REFUSED_INDICATORS = {
    "latencyNative": "native-histogram latency SLIs cannot be mapped (slo-guard reads classic histogram buckets)",
    "bool_gauge": "bool_gauge SLIs cannot be mapped (a gauge's share of good samples counts time, not events)",
}


def outcomes(sources: list[Source], options: ImportOptions) -> Iterator[Outcome]:
    for source in sources:
        for index, document in enumerate(source.documents, start=1):
            if (
                isinstance(document, Mapping)
                and document.get("apiVersion") == "pyrra.dev/v1alpha1"
                and document.get("kind") == "ServiceLevelObjective"
            ):
                yield _objective(source.path, index, document, options)


def _objective(path: str, index: int, document: Mapping[str, object], options: ImportOptions) -> Outcome:
    raw_metadata = document.get("metadata")
    metadata = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    draft = Draft(location(path, index, metadata.get("name")), origin=f"pyrra: {path}, document {index}")
    spec = draft.attempt(lambda: mapping(document.get("spec"), "spec"))
    if spec is None:
        return finish(draft, None, options)
    return finish(
        draft,
        Parts(
            name=draft.attempt(lambda: dns_name(text(metadata.get("name"), "metadata.name"), "metadata.name")),
            namespace=namespace(metadata.get("namespace"), "metadata.namespace", draft, options),
            objective=draft.attempt(lambda: _target(draft, spec.get("target"))),
            window=draft.attempt(lambda: _window(spec.get("window"))),
            indicator=draft.attempt(lambda: _indicator(draft, spec.get("indicator"))),
            labels=kubernetes_labels("metadata.labels", draft, metadata.get("labels")),
            description=description(spec.get("description"), "spec.description", draft),
        ),
        options,
    )


def _target(draft: Draft, raw: object) -> float:
    if raw is None:
        raise Refusal("spec.target", "is required")
    objective = percent(raw, "spec.target")
    if objective < 1:
        # Pyrra reads it as percent too, and only warns: keep its meaning, and say so.
        draft.warn("spec.target", f"{raw} is read as {objective} percent, as Pyrra does (a fraction would be < 1)")
    return objective


def _window(raw: object) -> str:
    written = text(raw, "spec.window")
    try:
        return format_duration(parse_duration(written))
    except DurationError as err:
        raise Refusal("spec.window", str(err)) from None


def _indicator(draft: Draft, raw: object) -> dict[str, Any]:
    indicator = mapping(raw, "spec.indicator")
    for kind, why in _REFUSED_INDICATORS.items():
        if kind in indicator:
            raise Refusal(f"spec.indicator.{kind}", why)
    kinds = [kind for kind in ("ratio", "latency") if indicator.get(kind) is not None]
    if len(kinds) != 1:
        raise Refusal("spec.indicator", "needs exactly one of ratio or latency")
    [kind] = kinds
    field = f"spec.indicator.{kind}"
    body = mapping(indicator[kind], field)
    if body.get("grouping"):
        labels = sequence(body["grouping"], f"{field}.grouping")
        dropped_grouping(draft, f"{field}.grouping", f"by ({', '.join(shown(str(label)) for label in labels)})")
    if kind == "ratio":
        return ratio(_metric(body, "errors", field), _metric(body, "total", field))
    return latency(
        _metric(body, "success", field),
        _metric(body, "total", field),
        bucket_field=f"{field}.success.metric",
        count_field=f"{field}.total.metric",
    )


def _metric(body: Mapping[str, object], key: str, field: str) -> Selector:
    metric_field = f"{field}.{key}.metric"
    written = text(mapping(body.get(key), f"{field}.{key}").get("metric"), metric_field)
    try:
        return parse_selector(written)
    except SelectorError as err:
        raise Refusal(metric_field, f"must be one series selector: {err}") from None
