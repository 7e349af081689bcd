"""Sloth: `version: prometheus/v1` specs and `sloth.slok.dev/v1` PrometheusServiceLevel resources.

Each entry of `slos` becomes one SLO named like Sloth's SLO ID, `<service>-<name>`. A spec states no window
(Sloth's period is a setting of the generator, 30 days by default), so the window is `--window`. Alerting settings
are not carried over: slo-guard computes its own burn-rate tiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

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
    refused,
    sequence,
    text,
)
from slo_guard.importers.indicators import from_bad
from slo_guard.importers.queries import Query, QueryFormError, parse_query, terms

DESCRIPTION = "Sloth specs (version: prometheus/v1, or sloth.slok.dev/v1 PrometheusServiceLevel)"
_WINDOW_TEMPLATE = re.compile(r"\{\{\s*\.window\s*\}\}")


@dataclass(frozen=True, slots=True)
class _Dialect:
    """Where the two forms put the same fields: the resource nests them under `spec` and spells them camelCase."""

    root: str
    error_query: str
    total_query: str
    plugins: str


_SPEC = _Dialect(root="", error_query="error_query", total_query="total_query", plugins="slo_plugins")
_RESOURCE = _Dialect(root="spec.", error_query="errorQuery", total_query="totalQuery", plugins="sloPlugins")


def outcomes(sources: list[Source], options: ImportOptions) -> Iterator[Outcome]:
    for source in sources:
        for index, document in enumerate(source.documents, start=1):
            if not isinstance(document, Mapping):
                continue
            if document.get("version") == "prometheus/v1":
                yield from _service(source.path, index, document, spec=document, dialect=_SPEC, options=options)
            elif document.get("apiVersion") == "sloth.slok.dev/v1" and document.get("kind") == "PrometheusServiceLevel":
                yield from _service(
                    source.path, index, document, spec=document.get("spec"), dialect=_RESOURCE, options=options
                )


def _service(
    path: str, index: int, document: Mapping[str, object], *, spec: object, dialect: _Dialect, options: ImportOptions
) -> Iterator[Outcome]:
    try:
        service = mapping(spec, dialect.root.rstrip(".") or "document")
        slos = sequence(service.get("slos"), f"{dialect.root}slos")
    except Refusal as refusal:
        yield refused(Draft(location(path, index, None), origin="", refusals=[refusal.note]))
        return
    metadata = document.get("metadata") if dialect is _RESOURCE else None
    meta = metadata if isinstance(metadata, Mapping) else {}
    for position, slo in enumerate(slos):
        field = f"{dialect.root}slos[{position}]"
        name = slo.get("name") if isinstance(slo, Mapping) else None
        draft = Draft(location(path, index, name), origin=f"sloth: {path}, document {index}, {field}")
        parts = _slo(draft, slo, service=service, meta=meta, field=field, dialect=dialect, options=options)
        yield finish(draft, parts, options)


def _slo(
    draft: Draft,
    raw: object,
    *,
    service: Mapping[str, object],
    meta: Mapping[str, object],
    field: str,
    dialect: _Dialect,
    options: ImportOptions,
) -> Parts | None:
    slo = draft.attempt(lambda: mapping(raw, field))
    if slo is None:
        return None
    for plugins_field, plugins in (
        (f"{dialect.root}{dialect.plugins}", service.get(dialect.plugins)),
        (f"{field}.plugins", slo.get("plugins")),
    ):
        if plugins:
            draft.refuse(plugins_field, "SLO plugins cannot be mapped: they can change the SLI Sloth computes")
    return Parts(
        name=draft.attempt(lambda: _name(service, slo, field, dialect)),
        namespace=namespace(meta.get("namespace"), "metadata.namespace", draft, options),
        objective=draft.attempt(lambda: percent(slo.get("objective"), f"{field}.objective")),
        window=options.window,
        indicator=draft.attempt(lambda: _indicator(draft, slo.get("sli"), f"{field}.sli", dialect)),
        labels=kubernetes_labels(
            f"{field}.labels", draft, meta.get("labels"), service.get("labels"), slo.get("labels")
        ),
        description=description(slo.get("description"), f"{field}.description", draft),
    )


def _name(service: Mapping[str, object], slo: Mapping[str, object], field: str, dialect: _Dialect) -> str:
    service_name = text(service.get("service"), f"{dialect.root}service")
    name = text(slo.get("name"), f"{field}.name")
    return dns_name(f"{service_name}-{name}", f"{field}.name")


def _indicator(draft: Draft, raw: object, field: str, dialect: _Dialect) -> dict[str, object]:
    sli = mapping(raw, field)
    if "raw" in sli:
        raise Refusal(f"{field}.raw", "raw SLIs cannot be mapped (a precomputed error ratio has no events to count)")
    if "plugin" in sli:
        plugin = sli["plugin"]
        named = f" {plugin['id']!r}" if isinstance(plugin, Mapping) and "id" in plugin else ""
        raise Refusal(f"{field}.plugin", f"SLI plugins cannot be mapped (plugin{named} writes its own queries)")
    if sli.get("events") is None:
        raise Refusal(field, "needs events (raw and plugin SLIs cannot be mapped)")
    events = mapping(sli["events"], f"{field}.events")
    errors_field = f"{field}.events.{dialect.error_query}"
    total_field = f"{field}.events.{dialect.total_query}"
    errors = _query(events.get(dialect.error_query), errors_field)
    total = _query(events.get(dialect.total_query), total_field)
    return from_bad(errors, total, bad_field=errors_field, total_field=total_field, draft=draft)


def _query(raw: object, field: str) -> Query:
    written = text(raw, field)
    try:
        query = parse_query(written)
    except QueryFormError as err:
        raise Refusal(field, f"not of the form sum(rate(SELECTOR[{{{{.window}}}}])): {err}") from None
    for term in terms(query):
        if not _WINDOW_TEMPLATE.fullmatch(term.range):
            raise Refusal(field, f"the range must be Sloth's [{{{{.window}}}}] (got [{term.range}])")
    return query
