"""OpenSLO v1: `SLO` documents with an inline `indicator` or an `indicatorRef` to an `SLI` in the given files.

The SLI must be a `ratioMetric` whose sources are Prometheus queries of the accepted form (see queries.py); its
range is only the source's sampling step, since slo-guard computes each window's rate itself. An SLO with several
objectives becomes one SLO per objective, named `<name>-1`, `<name>-2`, ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from slo_guard.domain.durations import DurationError, format_duration, parse_duration
from slo_guard.importers.common import (
    Draft,
    ImportOptions,
    Outcome,
    Parts,
    Refusal,
    Source,
    description,
    dns_name,
    echo,
    finish,
    kubernetes_labels,
    location,
    mapping,
    namespace,
    optional_text,
    percent,
    refused,
    sequence,
    shown,
    text,
)
from slo_guard.importers.indicators import from_bad, from_good
from slo_guard.importers.queries import Query, QueryFormError, parse_query, terms

API_VERSION = "openslo/v1"
DESCRIPTION = "OpenSLO SLOs (apiVersion: openslo/v1, kind: SLO)"
_SHORTHAND = re.compile(r"(?P<count>[0-9]+)(?P<unit>[mhdwMQY])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
"""The shorthand units of fixed length; months, quarters and years are refused."""
_TIMESLICES = ("Timeslices", "RatioTimeslices")


@dataclass(frozen=True, slots=True)
class _Found:
    """A document other SLOs refer to by name."""

    document: Mapping[str, object]
    where: str


@dataclass(frozen=True, slots=True)
class _Objective:
    field: str
    objective: float
    display_name: str | None


def outcomes(sources: list[Source], options: ImportOptions) -> Iterator[Outcome]:
    slis = _by_name(sources, "SLI")
    data_sources = _by_name(sources, "DataSource")
    for source in sources:
        for index, document in enumerate(source.documents, start=1):
            if isinstance(document, Mapping) and document.get("kind") == "SLO":
                if document.get("apiVersion") == API_VERSION:
                    yield from _slo(source.path, index, document, slis=slis, data_sources=data_sources, options=options)
                elif str(document.get("apiVersion")).startswith("openslo/"):
                    draft = Draft(location(source.path, index, _name_of(document)), origin="")
                    draft.refuse("apiVersion", f"only {API_VERSION} is read")
                    yield refused(draft)


def _by_name(sources: list[Source], kind: str) -> dict[str, list[_Found]]:
    found: dict[str, list[_Found]] = {}
    for source in sources:
        for index, document in enumerate(source.documents, start=1):
            if (
                isinstance(document, Mapping)
                and document.get("apiVersion") == API_VERSION
                and document.get("kind") == kind
            ):
                name = _name_of(document)
                if isinstance(name, str):
                    found.setdefault(name, []).append(_Found(document, f"{source.path} document {index}"))
    return found


def _name_of(document: Mapping[str, object]) -> object:
    metadata = document.get("metadata")
    return metadata.get("name") if isinstance(metadata, Mapping) else None


def _slo(
    path: str,
    index: int,
    document: Mapping[str, object],
    *,
    slis: dict[str, list[_Found]],
    data_sources: dict[str, list[_Found]],
    options: ImportOptions,
) -> Iterator[Outcome]:
    raw_metadata = document.get("metadata")
    metadata = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    draft = Draft(location(path, index, metadata.get("name")), origin=f"openslo: {path}, document {index}")
    spec = draft.attempt(lambda: mapping(document.get("spec"), "spec"))
    if spec is None:
        yield refused(draft)
        return
    name = draft.attempt(lambda: dns_name(text(metadata.get("name"), "metadata.name"), "metadata.name"))
    parts = Parts(
        name=name,
        namespace=namespace(metadata.get("namespace"), "metadata.namespace", draft, options),
        objective=None,
        window=draft.attempt(lambda: _window(draft, spec.get("timeWindow"), options)),
        indicator=draft.attempt(lambda: _indicator(draft, spec, slis, data_sources)),
        labels=kubernetes_labels("metadata.labels", draft, metadata.get("labels")),
        description=description(spec.get("description"), "spec.description", draft),
    )
    draft.attempt(lambda: _occurrences(spec.get("budgetingMethod")))
    objectives = _objectives(draft, spec.get("objectives"))
    if draft.refusals or not objectives:
        yield refused(draft)
        return
    several = len(objectives) > 1
    for number, objective in enumerate(objectives, start=1):
        # One line per finding: the shared warnings go with the first of the SLOs.
        each = Draft(
            draft.where,
            origin=f"{draft.origin}, {objective.field}" if several else draft.origin,
            warnings=draft.warnings if number == 1 else [],
        )
        yield finish(
            each,
            Parts(
                name=f"{name}-{number}" if several else name,
                namespace=parts.namespace,
                objective=objective.objective,
                window=parts.window,
                indicator=parts.indicator,
                labels=parts.labels,
                description=_described(parts.description, objective.display_name if several else None),
            ),
            options,
        )


def _described(described: str | None, display_name: str | None) -> str | None:
    if display_name is None:
        return described
    return f"{display_name}: {described}" if described else display_name


def _window(draft: Draft, raw: object, options: ImportOptions) -> str:
    if raw is None:
        draft.warn("spec.timeWindow", f"absent: the window is --window, {options.window}")
        return options.window
    windows = sequence(raw, "spec.timeWindow")
    if len(windows) != 1:
        raise Refusal("spec.timeWindow", f"must hold exactly one window (got {len(windows)})")
    window = mapping(windows[0], "spec.timeWindow[0]")
    if "calendar" in window or window.get("isRolling") is False:
        raise Refusal("spec.timeWindow[0]", "calendar-aligned windows cannot be mapped (slo-guard's window is rolling)")
    field = "spec.timeWindow[0].duration"
    written = text(window.get("duration"), field)
    shorthand = _SHORTHAND.fullmatch(written)
    if shorthand is None:
        raise Refusal(field, f"{written!r} is not a duration shorthand such as 28d")
    if shorthand["unit"] not in _UNIT_SECONDS:
        raise Refusal(field, f"{written!r} has no fixed length, which a rolling window needs (write days, e.g. 30d)")
    seconds = int(shorthand["count"]) * _UNIT_SECONDS[shorthand["unit"]]
    if seconds == 0:
        raise Refusal(field, "must be longer than zero")
    return format_duration(seconds)


def _occurrences(raw: object) -> str:
    if raw == "Occurrences":
        return raw
    if raw in _TIMESLICES:
        raise Refusal(
            "spec.budgetingMethod", f"{raw} budgeting cannot be mapped (slo-guard budgets events, as Occurrences)"
        )
    raise Refusal("spec.budgetingMethod", f"must be Occurrences (got {echo(raw)})")


def _objectives(draft: Draft, raw: object) -> list[_Objective]:
    items = draft.attempt(lambda: sequence(raw, "spec.objectives"))
    if items is not None and not items:
        draft.refuse("spec.objectives", "needs at least one objective")
    objectives = [
        draft.attempt(partial(_objective, item, f"spec.objectives[{n}]")) for n, item in enumerate(items or ())
    ]
    return [objective for objective in objectives if objective is not None]


def _objective(raw: object, field: str) -> _Objective:
    objective = mapping(raw, field)
    if "indicator" in objective or "indicatorRef" in objective:
        raise Refusal(field, "composite objectives, each with its own indicator, cannot be mapped")
    target, target_percent = objective.get("target"), objective.get("targetPercent")
    if (target is None) == (target_percent is None):
        raise Refusal(field, "needs exactly one of target or targetPercent")
    value = (
        percent(target, f"{field}.target", scale=100)
        if target is not None
        else percent(target_percent, f"{field}.targetPercent")
    )
    return _Objective(field, value, optional_text(objective.get("displayName"), f"{field}.displayName"))


def _indicator(
    draft: Draft, spec: Mapping[str, object], slis: dict[str, list[_Found]], data_sources: dict[str, list[_Found]]
) -> dict[str, Any]:
    inline, reference = spec.get("indicator"), spec.get("indicatorRef")
    if inline is not None and reference is not None:
        raise Refusal("spec.indicatorRef", "give indicator or indicatorRef, not both")
    if inline is not None:
        sli, prefix = mapping(inline, "spec.indicator"), "spec.indicator."
    elif reference is not None:
        sli_name = text(reference, "spec.indicatorRef")
        found = _one(slis, sli_name, "spec.indicatorRef", "SLI")
        sli, prefix = found.document, f"SLI {shown(sli_name)} in {found.where}, "
    else:
        raise Refusal("spec.indicator", "is required (or spec.indicatorRef)")
    sli_spec = mapping(sli.get("spec"), f"{prefix}spec")
    if "thresholdMetric" in sli_spec:
        raise Refusal(
            f"{prefix}spec.thresholdMetric", "threshold SLIs cannot be mapped (they compare values, not count events)"
        )
    field = f"{prefix}spec.ratioMetric"
    if sli_spec.get("ratioMetric") is None:
        raise Refusal(field, "is required (the only kind of SLI that maps)")
    ratio = mapping(sli_spec["ratioMetric"], field)
    if "raw" in ratio:
        raise Refusal(f"{field}.raw", "raw ratios cannot be mapped (a precomputed ratio has no events to count)")
    numerators = [key for key in ("good", "bad") if ratio.get(key) is not None]
    if len(numerators) != 1:
        raise Refusal(field, "needs exactly one of good or bad, with total")
    [numerator] = numerators
    events = _query(ratio[numerator], f"{field}.{numerator}", data_sources)
    total = _query(ratio.get("total"), f"{field}.total", data_sources)
    if numerator == "bad":
        return from_bad(events, total, bad_field=f"{field}.bad", total_field=f"{field}.total", draft=draft)
    return from_good(events, total, good_field=f"{field}.good", total_field=f"{field}.total", draft=draft)


def _query(raw: object, field: str, data_sources: dict[str, list[_Found]]) -> Query:
    source = mapping(mapping(raw, field).get("metricSource"), f"{field}.metricSource")
    kind = source.get("type")
    if kind is None and source.get("metricSourceRef") is not None:
        reference = text(source["metricSourceRef"], f"{field}.metricSource.metricSourceRef")
        data_source = _one(data_sources, reference, f"{field}.metricSource.metricSourceRef", "DataSource")
        data_spec = data_source.document.get("spec")
        kind = data_spec.get("type") if isinstance(data_spec, Mapping) else None
    if not isinstance(kind, str) or kind.lower() != "prometheus":
        raise Refusal(f"{field}.metricSource", f"only Prometheus sources can be mapped (type {echo(kind)})")
    query_field = f"{field}.metricSource.spec.query"
    written = text(mapping(source.get("spec"), f"{field}.metricSource.spec").get("query"), query_field)
    try:
        query = parse_query(written)
    except QueryFormError as err:
        raise Refusal(query_field, f"not of the form sum(rate(SELECTOR[DURATION])): {err}") from None
    for term in terms(query):
        try:
            parse_duration(term.range)
        except DurationError as err:
            raise Refusal(query_field, f"the range must be a duration: {err}") from None
    return query


def _one(found: dict[str, list[_Found]], name: str, field: str, kind: str) -> _Found:
    candidates = found.get(name, [])
    if not candidates:
        raise Refusal(field, f"no {kind} named {name!r} in the given files")
    if len(candidates) > 1:
        raise Refusal(field, f"{len(candidates)} {kind}s are named {name!r}: {', '.join(c.where for c in candidates)}")
    return candidates[0]
