// slo-guard's UI: refresh the page's live parts in place, and draw the detail charts with uPlot.
// The pages work without this file; it only keeps them current and adds the charts.
"use strict";

(() => {
  const body = document.body;
  const every = Number(body.dataset.refresh || 0) * 1000;
  const seriesUrl = body.dataset.series;
  const status = document.getElementById("refresh");
  const plots = new Map();
  const HEIGHT = 200;

  const clock = (date) => date.toISOString().slice(11, 19) + " UTC";

  // Swap each [data-live] element for its fresh copy; an unchanged one is left alone (focus, selection stay).
  async function refreshPage() {
    const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      throw new Error(response.status === 401 ? "signed out: reload the page" : `HTTP ${response.status}`);
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const live of document.querySelectorAll("[data-live]")) {
      const next = fresh.getElementById(live.id);
      if (next && next.innerHTML !== live.innerHTML) {
        live.replaceWith(document.adoptNode(next));
      }
    }
  }

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // Times in UTC like the rest of the page: dates over long spans, hours and minutes over short ones.
  function times(u, splits) {
    const long = u.scales.x.max - u.scales.x.min > 2 * 86400;
    return splits.map((ts) => {
      const text = new Date(ts * 1e3).toISOString();
      return long ? text.slice(5, 10) : text.slice(11, 16);
    });
  }

  function percent(digits) {
    return (u, splits) => splits.map((v) => (v == null ? "" : `${+v.toFixed(digits)}%`));
  }

  function draw(id, series, data, values) {
    const element = document.getElementById(id);
    if (!element) {
      return;
    }
    let plot = plots.get(id);
    if (plot) {
      plot.setData(data);
    } else {
      const axis = { stroke: css("--muted"), grid: { stroke: css("--line"), width: 1 }, ticks: { stroke: css("--line") } };
      plot = new uPlot(
        {
          width: element.clientWidth || 600,
          height: HEIGHT,
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
          scales: { x: { time: true } },
          legend: { live: false },
          series: [{ label: "time (UTC)" }, ...series],
          axes: [{ ...axis, values: times }, { ...axis, size: 64, values }],
        },
        data,
        element,
      );
      plots.set(id, plot);
      new ResizeObserver(() => plot.setSize({ width: element.clientWidth, height: HEIGHT })).observe(element);
    }
    element.dataset.points = String(data[1].filter((v) => v != null).length);
  }

  function line(label, colour, extra) {
    return { label, stroke: colour, width: 2, spanGaps: false, ...extra };
  }

  function guide(label, dash) {
    return { label, stroke: css("--guide"), width: 1, dash, points: { show: false } };
  }

  const constant = (times, value) => times.map(() => value);
  const scaled = (values, factor) => values.map((v) => (v == null ? null : v * factor));

  function drawAll(doc) {
    const budget = doc.budget;
    draw(
      "chart-budget",
      [
        line("budget left", css("--series-1")),
        guide("exhausted", [6, 4]),
        guide("resumeAbove", [2, 3]),
      ],
      [budget.t, scaled(budget.remaining, 100), constant(budget.t, 0), constant(budget.t, doc.resumeAbove * 100)],
      percent(1),
    );
    const sli = doc.sli;
    draw(
      "chart-sli",
      [line(`SLI over ${sli.window}`, css("--series-1")), guide("objective", [6, 4])],
      [sli.t, scaled(sli.sli, 100), constant(sli.t, doc.objective * 100)],
      percent(4),
    );
    doc.tiers.forEach((tier, index) => {
      draw(
        `chart-tier-${index}`,
        [
          line(`${tier.longWindow} burn rate`, css("--series-1")),
          line(`${tier.shortWindow} burn rate`, css("--series-2"), { dash: [1, 2] }),
          guide(`factor ${tier.factor}`, [6, 4]),
        ],
        [tier.t, tier.long, tier.short, constant(tier.t, tier.factor)],
        (u, splits) => splits.map((v) => (v == null ? "" : `${+v.toFixed(2)}x`)),
      );
      const cell = document.querySelector(`[data-fired="${index}"]`);
      if (cell) {
        cell.textContent = tier.fired;
      }
    });
  }

  async function refreshCharts() {
    const note = document.getElementById("charts-note");
    const response = await fetch(seriesUrl, { credentials: "same-origin", cache: "no-store" });
    const doc = await response.json().catch(() => ({}));
    if (!response.ok) {
      note.textContent = `charts unavailable: ${doc.unavailable || `HTTP ${response.status}`}`;
      return;
    }
    note.textContent = "";
    drawAll(doc);
  }

  async function refresh(first) {
    try {
      if (!first) {
        await refreshPage();
      }
      if (seriesUrl && typeof uPlot !== "undefined") {
        await refreshCharts();
      }
      if (!first) {
        status.textContent = `updated ${clock(new Date())}`;
      }
    } catch (error) {
      status.textContent = `not updated since ${clock(new Date(lastGood))}: ${error.message}`;
      return;
    }
    lastGood = Date.now();
  }

  let lastGood = Date.now();

  async function loop(first) {
    // A hidden tab asks nothing; it catches up when shown again.
    if (!document.hidden) {
      await refresh(first);
    }
    if (every > 0) {
      setTimeout(() => loop(false), every);
    }
  }

  // Filters apply on change; the button stays for pages without this script.
  for (const select of document.querySelectorAll(".filters select")) {
    select.addEventListener("change", () => select.form.submit());
  }

  loop(true);
})();
