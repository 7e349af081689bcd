"""The web UI: a read-only status page of every SLO, served from the operator's memory (docs/ui.md).

Pages are HTML rendered here, readable without JavaScript; `ui_static/ui.js` refreshes them in place and draws
the detail charts with the vendored uPlot. Every response carries a strict Content-Security-Policy, so nothing
inline runs or styles anything, and every string from an SLO passes through `esc`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml
from aiohttp import web

from slo_guard.domain.display import NOT_AVAILABLE, budget_percent
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation_types import State
from slo_guard.service.gate_board import GateBoard
from slo_guard.service.ports import RangeSource
from slo_guard.service.ui import (
    STATE_ORDER,
    ActionRow,
    ChartPlan,
    Charts,
    Column,
    Detail,
    Overview,
    Series,
    Sparklines,
    Summary,
    detail,
    duration_text,
    moment_text,
    number_text,
    overview,
)

logger = logging.getLogger("slo_guard.ui")

STATIC_DIR = Path(__file__).parent / "ui_static"
STATIC_PREFIX = "/static/"
PAGE_WAIT = 0.5
"""Seconds a page waits for range queries before it renders what is cached; the script fetches the rest."""
MIN_REFRESH = 1.0
"""Seconds between two refreshes of a page at least, however short an SLO's evaluation interval."""
SESSION_COOKIE = "slo-guard-ui-token"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript"}
"""By suffix, not from the system's MIME database, which slim images lack; anything else is plain text (LICENSE)."""
SPARK_WIDTH, SPARK_HEIGHT = 96, 20
STATE_CLASS = {
    State.HEALTHY.value: "st-h",
    State.BURNING.value: "st-b",
    State.EXHAUSTED.value: "st-x",
    State.UNKNOWN.value: "st-u",
}
"""Each state's class: its colour and its shape (docs/ui.md), both beside the state's name."""
HOLD_ACTIONS = frozenset({"Pause", "Scale", "Deny"})
EMPTY_CELL = '<td class="n">—</td>'
"""A cell with nothing to say (no tier firing, not burning, no targets, no sparkline yet)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def esc(value: object) -> str:
    """Text for HTML content and double-quoted attributes."""
    return html.escape(str(value), quote=True)


def slo_path(namespace: str, name: str) -> str:
    return f"/namespaces/{quote(namespace, safe='')}/servicelevelobjectives/{quote(name, safe='')}"


def series_path(namespace: str, name: str) -> str:
    return f"/api/v1{slo_path(namespace, name)}/series"


@dataclass(frozen=True, slots=True)
class StaticFile:
    url: str
    body: bytes
    content_type: str


class StaticFiles:
    """ui_static/, each file under a name carrying a hash of its content, so it can be cached for a year."""

    def __init__(self, directory: Path) -> None:
        self._by_name: dict[str, StaticFile] = {}
        self._by_url: dict[str, StaticFile] = {}
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:12]
            name = path.relative_to(directory).as_posix()
            stem, dot, suffix = path.name.rpartition(".")
            versioned = f"{stem}.{digest}.{suffix}" if dot else f"{path.name}.{digest}"
            content_type = CONTENT_TYPES.get(path.suffix, "text/plain")
            item = StaticFile(STATIC_PREFIX + versioned, body, content_type)
            self._by_name[name] = item
            self._by_url[item.url] = item

    def url(self, name: str) -> str:
        return self._by_name[name].url

    def get(self, url: str) -> StaticFile | None:
        return self._by_url.get(url)


class UIServer:
    """`GET /`, `GET /namespaces/{ns}/servicelevelobjectives/{name}`, their chart series as JSON, static files."""

    def __init__(
        self,
        board: GateBoard,
        bodies: Mapping[str, Mapping[str, Any]],
        charts: RangeSource | None,
        *,
        port: int,
        host: str = "0.0.0.0",
        token_file: Path | None = None,
        auth_header: str | None = None,
        refresh_seconds: float = 30.0,
        rules_enabled: bool = False,
        min_step: int = 30,
        tenant_label: str | None = None,
    ) -> None:
        self._board = board
        self._bodies = bodies
        self._charts = (
            Charts(charts, bodies, recorded=rules_enabled, min_step=min_step, tenant_label=tenant_label)
            if charts is not None
            else None
        )
        self._port = port
        self._host = host
        self._token_file = token_file
        self._auth_header = auth_header
        self._refresh = max(refresh_seconds, MIN_REFRESH)
        self._static = StaticFiles(STATIC_DIR)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[self._guard])
        app.on_response_prepare.append(_secure)
        app.router.add_get("/", self._overview)
        app.router.add_get("/namespaces/{namespace}/servicelevelobjectives/{name}", self._detail)
        app.router.add_get("/api/v1/namespaces/{namespace}/servicelevelobjectives/{name}/series", self._series)
        app.router.add_get(STATIC_PREFIX + "{file}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._charts is not None:
            await self._charts.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- Requests ---

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="read-only: GET only\n", headers={"Allow": "GET, HEAD"})
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        started = time.perf_counter()
        response = await handler(request)
        # How long the page took to build, for the browser's developer tools and the benchmark.
        response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    def _refusal(self, request: web.Request) -> web.StreamResponse | None:
        """None when the request may be answered; otherwise the answer to send instead."""
        if self._auth_header is not None and not request.headers.get(self._auth_header, "").strip():
            return web.Response(status=401, text=f"sign in first: no {self._auth_header} header from the proxy\n")
        if self._token_file is None:
            return None
        try:
            token = self._token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            logger.error("cannot read the UI token file %s: %s", self._token_file, error.strerror)
            return web.Response(status=503, text="UI token unreadable on the operator's side\n")
        offered = request.query.get("token")
        if offered is not None and token and _same(offered, token):
            # A link carrying the token: swap it for a cookie, and take it out of the address bar.
            rest = {key: value for key, value in request.query.items() if key != "token"}
            response = web.Response(
                status=303, headers={"Location": request.path + (f"?{urlencode(rest)}" if rest else "")}
            )
            secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
            response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/", secure=secure)
            return response
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        sent = bearer if scheme == "Bearer" else request.cookies.get(SESSION_COOKIE, "")
        if token and _same(sent, token):
            return None
        return web.Response(
            status=401,
            text="token required: open a link ending in ?token=TOKEN, or send Authorization: Bearer TOKEN\n",
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def _overview(self, request: web.Request) -> web.StreamResponse:
        namespace = request.query.get("namespace") or None
        state = request.query.get("state") if request.query.get("state") in STATE_ORDER else None
        view = overview(self._board, self._bodies, namespace=namespace, state=state)
        sparks = await self._charts.sparklines(wait=PAGE_WAIT) if self._charts is not None else None
        main = _overview_main(view, sparks, namespace=namespace, state=state)
        return self._page(request, title="Service level objectives", main=main, refresh=self._refresh)

    async def _detail(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        found = detail(self._board, self._bodies, namespace, name)
        if found is None:
            main = f"<h1>Not found</h1><p>No ServiceLevelObjective {esc(namespace)}/{esc(name)} is evaluated here.</p>"
            return self._page(request, title="Not found", main=main, status=404)
        view, body = found
        plan: ChartPlan | str | None = None
        series: Series | None = None
        if self._charts is not None:
            plan = self._charts.plan(body)
            series = await self._charts.series(view.summary.key, body, wait=PAGE_WAIT)
        return self._page(
            request,
            title=f"{name} ({namespace})",
            main=_detail_main(view, plan, series),
            refresh=max(float(view.interval), MIN_REFRESH),
            series=series_path(namespace, name) if isinstance(plan, ChartPlan) else None,
            charts=True,
        )

    async def _series(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        key = f"{namespace}/{name}"
        body = self._bodies.get(key)
        if body is None:
            return _json({"slo": key, "message": f"no ServiceLevelObjective {key}"}, status=404)
        if self._charts is None:
            return _json({"slo": key, "unavailable": "no Prometheus to ask for range queries"}, status=503)
        series = await self._charts.series(key, body, wait=None)
        if series is None or series.document is None:
            return _json({"slo": key, "unavailable": series.error if series else "no answer yet"}, status=503)
        return _json(series.document)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        item = self._static.get(request.path)
        if item is None:
            raise web.HTTPNotFound()
        response = web.Response(body=item.body, content_type=item.content_type, charset="utf-8")
        # The name changes with the content, so a browser may keep it for a year.
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.enable_compression()
        return response

    def _page(
        self,
        request: web.Request,
        *,
        title: str,
        main: str,
        status: int = 200,
        refresh: float | None = None,
        series: str | None = None,
        charts: bool = False,
    ) -> web.Response:
        user = request.headers.get(self._auth_header, "").strip() if self._auth_header else ""
        attributes = ""
        if refresh is not None:
            attributes += f' data-refresh="{refresh:g}"'
        if series is not None:
            attributes += f' data-series="{esc(series)}"'
        styles = [self._static.url("ui.css")]
        scripts = [self._static.url("ui.js")]
        if charts:
            styles.insert(0, self._static.url("vendor/uPlot.min.css"))
            scripts.insert(0, self._static.url("vendor/uPlot.iife.min.js"))
        page = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="color-scheme" content="light dark">'
            # No favicon: a data URL keeps the browser from asking for /favicon.ico.
            '<link rel="icon" href="data:,">'
            f"<title>{esc(title)} · slo-guard</title>"
            + "".join(f'<link rel="stylesheet" href="{url}">' for url in styles)
            + "".join(f'<script src="{url}" defer></script>' for url in scripts)
            + f"</head><body{attributes}>"
            '<header class="top"><a class="brand" href="/">slo-guard</a>'
            + (f'<span class="user">signed in as {esc(user)}</span>' if user else "")
            + '<span id="refresh" class="refresh" role="status"></span></header>'
            f"<main>{main}</main>"
            '<footer>Read-only. Charts drawn with <a href="'
            + self._static.url("vendor/uPlot.LICENSE")
            + '">uPlot (MIT licence)</a>.</footer></body></html>\n'
        )
        response = web.Response(status=status, text=page, content_type="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.enable_compression()
        return response


async def _secure(_request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, errors and static files included, carries the security headers."""
    response.headers.update(SECURITY_HEADERS)


def _same(sent: str, token: str) -> bool:
    return hmac.compare_digest(sent.encode(), token.encode())


def _json(document: Mapping[str, Any], *, status: int = 200) -> web.Response:
    response = web.Response(
        status=status, text=json.dumps(document, separators=(",", ":")), content_type="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    response.enable_compression()
    return response


# --- The overview ---------------------------------------------------------------------------------------------


def _overview_main(view: Overview, sparks: Sparklines | None, *, namespace: str | None, state: str | None) -> str:
    namespaces = "".join(
        f'<option value="{esc(item)}"{" selected" if item == namespace else ""}>{esc(item)}</option>'
        for item in view.namespaces
    )
    states = "".join(
        f'<option value="{item}"{" selected" if item == state else ""}>{item}</option>' for item in STATE_ORDER
    )
    form = (
        '<form class="filters" method="get" action="/">'
        f'<label>Namespace <select name="namespace"><option value="">all</option>{namespaces}</select></label>'
        f'<label>State <select name="state"><option value="">all</option>{states}</select></label>'
        '<button type="submit">Filter</button></form>'
    )
    counts = " · ".join(
        f'<a class="{STATE_CLASS[item]}" href="/?{esc(urlencode(_filters(namespace, item)))}">'
        f"{view.counts.get(item, 0)} {item}</a>"
        for item in STATE_ORDER
    )
    notes = []
    if sparks is None:
        notes.append("charts unavailable: no Prometheus to ask for range queries, so no sparklines")
    elif sparks.error is not None:
        notes.append(f"charts unavailable: {sparks.error}")
    shown = f"{len(view.rows)} of {view.total} SLOs" if len(view.rows) != view.total else f"{view.total} SLOs"
    rows = "".join(_overview_row(row, sparks) for row in view.rows)
    if not view.rows:
        rows = '<tr><td colspan="9">No SLO matches these filters.</td></tr>'
    return (
        f"<h1>Service level objectives</h1>{form}"
        f'<div id="overview" data-live><p class="counts">{shown}: {counts}</p>'
        + "".join(f'<p class="note">{esc(note)}</p>' for note in notes)
        + '<table class="slos"><thead><tr><th>SLO</th><th>State</th><th>Objective</th><th>Budget left</th>'
        "<th>Budget, 24 h</th><th>Fastest firing tier</th><th>Exhausted in</th><th>Targets held</th>"
        f"<th>Gate</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _filters(namespace: str | None, state: str) -> dict[str, str]:
    return {"namespace": namespace, "state": state} if namespace else {"state": state}


def _overview_row(row: Summary, sparks: Sparklines | None) -> str:
    """One row, kept short: a thousand of them make the page. Cells with nothing to say are `n` (hidden on phones)."""
    spark = sparks.columns.get(row.key) if sparks is not None else None
    tier = row.fastest_tier
    reason = f" <small>{esc(row.reason)}</small>" if row.reason else ""
    return (
        f'<tr><td class="slo"><a href="{esc(slo_path(row.namespace, row.name))}">{esc(row.name)}</a> '
        f"<small>{esc(row.namespace)}</small></td>"
        f'<td class="st {STATE_CLASS.get(row.state, "st-u")}">{esc(row.state)}{reason}</td>'
        f"<td>{esc(row.objective)} over {esc(row.window)}</td>"
        f"<td>{_budget(row)}</td>"
        + (f"<td>{_sparkline(spark)}</td>" if spark is not None else EMPTY_CELL)
        + (f'<td class="t">{esc(tier.label)}</td>' if tier is not None else EMPTY_CELL)
        + _exhaustion_cell(row)
        + (f"<td>{row.held} of {row.targets} held</td>" if row.targets else EMPTY_CELL)
        + ('<td class="g-o">gate open</td></tr>' if row.gate_open else '<td class="g-c">gate closed</td></tr>')
    )


def _state(row: Summary) -> str:
    reason = f" <small>{esc(row.reason)}</small>" if row.reason else ""
    return f'<span class="st {STATE_CLASS.get(row.state, "st-u")}">{esc(row.state)}</span>{reason}'


def _budget(row: Summary) -> str:
    meter = row.budget_meter
    if meter is None:
        return f"budget {NOT_AVAILABLE}"
    # The bar stops at either end; the signed text beside it says how far past them the budget is.
    return f'<meter max="100" low="10" high="50" optimum="100" value="{meter:g}"></meter> {esc(row.budget_text)}'


def _exhaustion(row: Summary) -> str | None:
    """When the budget runs out at the current burn; None when it is not burning."""
    if row.state == State.EXHAUSTED.value:
        return "budget spent"
    if row.time_to_exhaustion is None:
        return None
    return duration_text(row.time_to_exhaustion)


def _exhaustion_cell(row: Summary) -> str:
    exhausted = _exhaustion(row)
    if exhausted is None:
        return EMPTY_CELL
    # `e`: a bare duration, which phones (without the column's heading) prefix with what it is.
    return f"<td>{exhausted}</td>" if row.state == State.EXHAUSTED.value else f'<td class="e">{exhausted}</td>'


def _gate(row: Summary) -> str:
    if row.gate_open:
        return '<span class="g-o">gate open</span>'
    return '<span class="g-c">gate closed</span>'


def _sparkline(spark: Column) -> str:
    """The budget of the last 24 h as an SVG path, scaled to its own range but never to less than 10 % of budget."""
    values = [value for value in spark.values if value is not None]
    if not values:
        return "no budget data"
    low, high = min(values), max(values)
    if high - low < 0.1:
        middle = (high + low) / 2
        low, high = middle - 0.05, middle + 0.05
    x_step = SPARK_WIDTH / max(1, len(spark.values) - 1)

    def y(value: float) -> int:
        return round((high - value) / (high - low) * (SPARK_HEIGHT - 2)) + 1

    path: list[str] = []
    drawing = False
    for index, value in enumerate(spark.values):
        if value is None:
            drawing = False
            continue
        path.append(f"{'' if drawing else 'M'}{round(index * x_step)} {y(value)}")
        drawing = True
    zero = f'<path class="z" d="M0 {y(0)}H{SPARK_WIDTH}"/>' if low <= 0 <= high else ""
    first, last = values[0], values[-1]
    label = f"24 h: from {budget_percent(first)} to {budget_percent(last)}"
    return (
        f'<svg viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img" aria-label="{label}">'
        f'{zero}<path d="{" ".join(path)}"/></svg>'
    )


# --- The detail page ------------------------------------------------------------------------------------------


def _detail_main(view: Detail, plan: ChartPlan | str | None, series: Series | None) -> str:
    row = view.summary
    return (
        f'<nav class="crumbs"><a href="/">All SLOs</a> / '
        f'<a href="/?{esc(urlencode({"namespace": row.namespace}))}">{esc(row.namespace)}</a></nav>'
        f'<div id="summary" data-live>{_summary(view)}</div>'
        f"{_charts(view, plan, series)}"
        f'<div id="tables" data-live>{_tables(view, series)}</div>'
    )


def _summary(view: Detail) -> str:
    row = view.summary
    facts = [
        ("Budget left", _budget(row)),
        ("Gate", f"{_gate(row)}: {esc(row.gate_message)}"),
        ("Objective", f"{esc(row.objective)} over {esc(row.window)}"),
        ("Exhausted in", _exhaustion(row) or "not burning"),
        ("Fastest firing tier", esc(row.fastest_tier.label) if row.fastest_tier else "none"),
        ("Evaluated", _time(row.evaluated_at)),
        ("Policy", esc(" · ".join(f"{key} {value}" for key, value in view.policy)) or NOT_AVAILABLE),
        (
            "Indicator",
            "<br>".join(f"{esc(what)} <code>{esc(text)}</code>" for what, text in view.indicator) or NOT_AVAILABLE,
        ),
        ("Targets held", f"{row.held} of {row.targets}"),
    ]
    description = f'<p class="description">{esc(view.description)}</p>' if view.description else ""
    return (
        f"<h1>{esc(row.name)} <small>{esc(row.namespace)}</small></h1>{description}"
        f'<p class="state">{_state(row)} <span class="message">{esc(view.message)}</span></p>'
        '<dl class="facts">' + "".join(f"<div><dt>{term}</dt><dd>{value}</dd></div>" for term, value in facts) + "</dl>"
    )


def _charts(view: Detail, plan: ChartPlan | str | None, series: Series | None) -> str:
    if plan is None:
        return _charts_section("charts unavailable: no Prometheus to ask for range queries", "")
    if isinstance(plan, str):
        return _charts_section(f"charts unavailable: {plan}", "")
    if series is None:
        note = "charts loading…"
    elif series.error is not None:
        note = f"charts unavailable: {series.error}"
    else:
        note = ""
    objective = plan.objective
    window = format_duration(objective.window)
    resume = f"{view.resume_above * 100:g}%" if view.resume_above is not None else NOT_AVAILABLE
    source = "recording rules" if plan.recorded else "PromQL"
    figures = [
        _figure(
            "chart-budget",
            f"Budget left over the {window} window (every {format_duration(plan.budget.step)}, from {source}); "
            f"dashed: exhausted (0%), dotted: resumeAbove ({resume})",
        ),
        _figure(
            "chart-sli",
            f"SLI, each point over the preceding {format_duration(plan.sli_window)}; dashed: the objective "
            f"({objective.objective * 100:g}%)",
        ),
    ]
    tiers = "".join(
        _figure(
            f"chart-tier-{index}",
            f"Burn rate, {tier.tier.severity.value} tier {format_duration(tier.tier.long_window)}/"
            f"{format_duration(tier.tier.short_window)}, last {format_duration(tier.long.span)}: both windows "
            f"against the factor {number_text(tier.tier.factor)} (dashed); it fires when both are above it",
        )
        for index, tier in enumerate(plan.tiers)
    )
    return _charts_section(note, "".join(figures) + f'<div class="tiers">{tiers}</div>')


def _charts_section(note: str, figures: str) -> str:
    return (
        '<section class="charts" aria-labelledby="h-charts"><h2 id="h-charts">Charts</h2>'
        f'<p id="charts-note" class="note" role="status">{esc(note)}</p>'
        f"{figures}<noscript><p>The charts need JavaScript; everything else on this page does not.</p></noscript>"
        "</section>"
    )


def _figure(chart_id: str, caption: str) -> str:
    return f'<figure><figcaption>{esc(caption)}</figcaption><div class="chart" id="{chart_id}"></div></figure>'


def _tables(view: Detail, series: Series | None) -> str:
    fired: list[str] = []
    if series is not None and series.document is not None:
        fired = [tier["fired"] for tier in series.document["tiers"]]
    return (
        _section("Burn-rate tiers", _tiers_table(view, fired))
        + _section("Actions", _timeline(view.actions))
        + _section("Targets", _targets_table(view))
        + _section("Conditions", _conditions_table(view))
        + _section("YAML", f"<pre><code>{esc(_yaml(view.manifest))}</code></pre>")
    )


def _section(title: str, content: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f'<section aria-labelledby="h-{anchor}"><h2 id="h-{anchor}">{esc(title)}</h2>{content}</section>'


def _tiers_table(view: Detail, fired: list[str]) -> str:
    if not view.tiers:
        return "<p>No burn rates yet: the SLO has no evaluation with data.</p>"
    rows = []
    for index, tier in enumerate(view.tiers):
        firing = '<span class="f-on">firing</span>' if tier.firing else '<span class="f-off">not firing</span>'
        last = esc(fired[index]) if index < len(fired) else "—"
        rows.append(
            f"<tr><td>{esc(tier.severity)}</td>"
            f"<td>{esc(tier.long_window)}: {_burn(tier.long_burn, tier.factor)}</td>"
            f"<td>{esc(tier.short_window)}: {_burn(tier.short_burn, tier.factor)}</td>"
            f"<td>{number_text(tier.factor)}</td><td>{firing}</td>"
            f'<td data-fired="{index}">{last}</td></tr>'
        )
    return _table(("Severity", "Long window", "Short window", "Factor", "Now", "Last fired"), rows)


def _burn(burn: float | None, factor: float | None) -> str:
    if burn is None:
        return "no traffic"
    if factor is not None and burn > factor:
        return f'<span class="above">{number_text(burn)} (above)</span>'
    return number_text(burn)


def _timeline(actions: Iterable[ActionRow]) -> str:
    items = [
        f'<li class="{_action_class(action)}">{_time(action.time)} <b>{esc(action.action)}</b> '
        f"{esc(action.kind)} {esc(action.name)}: {esc(action.result)}, {esc(action.reason)}"
        + (f'<br><span class="message">{esc(action.message)}</span>' if action.message else "")
        + "</li>"
        for action in actions
    ]
    if not items:
        return "<p>slo-guard has not acted on any target of this SLO yet.</p>"
    return f'<ol class="timeline">{"".join(items)}</ol>'


def _action_class(action: ActionRow) -> str:
    """The entry's shape: a hold, a release, an override, a contest, or a refusal or failure."""
    if action.result in ("Refused", "Failed"):
        return "a-bad"
    if "Override" in action.reason:
        return "a-override"
    if action.reason.endswith("Reasserted"):
        return "a-contest"
    return "a-hold" if action.action in HOLD_ACTIONS else "a-release"


def _targets_table(view: Detail) -> str:
    if not view.targets:
        return "<p>No targets: this SLO is only evaluated.</p>"
    rows = [
        f"<tr><td>{esc(target.kind)} {esc(target.name)}</td>"
        f'<td><span class="{"t-held" if target.held else "t-free"}">{esc(target.state)}</span></td>'
        f"<td>{_time(target.since)}</td><td>{esc(target.reason)}</td><td>{esc(target.message)}</td></tr>"
        for target in view.targets
    ]
    return _table(("Target", "State", "Since", "Reason", "Message"), rows)


def _conditions_table(view: Detail) -> str:
    if not view.conditions:
        return "<p>No conditions yet.</p>"
    rows = [
        f"<tr><td>{esc(item.type)}</td><td>{esc(item.status)}</td><td>{esc(item.reason)}</td>"
        f"<td>{esc(item.message)}</td><td>{_time(item.since)}</td></tr>"
        for item in view.conditions
    ]
    return _table(("Type", "Status", "Reason", "Message", "Since"), rows)


def _table(headers: Iterable[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{esc(header)}</th>" for header in headers)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _time(moment: datetime | None) -> str:
    if moment is None:
        return NOT_AVAILABLE
    return f'<time datetime="{esc(moment.isoformat())}">{esc(moment_text(moment))}</time>'


def _yaml(manifest: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(manifest), sort_keys=False, allow_unicode=True, width=120)
