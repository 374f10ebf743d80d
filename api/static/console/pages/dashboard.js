// The numbers: GET /api/v1/dashboard?days=N, drawn with the vendored uPlot (vendor/uPlot.esm.js,
// MIT, 1.6.32). uPlot draws on <canvas> and sizes its elements through element.style (CSSOM),
// which the console's CSP (style-src 'self') allows; its stylesheet is a <link> like ours.
import uPlot from "../vendor/uPlot.esm.js";
import {
  errorBox,
  field,
  fmtNumber,
  fmtPercent,
  fmtSeconds,
  fmtUsd,
  table,
  useStylesheet,
  usePageStyles,
} from "../lib/ui.js";

const PERIODS = [7, 30, 90];
// Distinguishable on white and for the common colour-vision deficiencies (Okabe–Ito).
const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const QUALITY_ORDER = ["HOT", "WARM", "COLD", "UNQUALIFIED"];

/** "2026-11-29" as the unix seconds uPlot's time axis wants (the day's UTC midnight: the API's
 * days are already the tenant's calendar days, so no further zone shift). */
function daySeconds(day) {
  const [y, m, d] = String(day).split("-").map(Number);
  return Date.UTC(y, m - 1, d) / 1000;
}

function chartWidth(node) {
  return Math.max(260, Math.floor(node.clientWidth || 600) - 8);
}

function makeChart(ctx, holder, { title, series, data, yLabel, values }) {
  const opts = {
    title,
    width: chartWidth(holder),
    height: 220,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    // From 0, and a visible scale on a quiet period (all zeros) instead of uPlot's 0-100.
    scales: { x: { time: true }, y: { range: (_u, _min, max) => uPlot.rangeNum(0, max > 0 ? max : 1, 0.1, true) } },
    axes: [{}, { label: yLabel, values }],
    series: [
      { label: "day", value: (_u, ts) => (ts === null ? "–" : new Date(ts * 1000).toISOString().slice(0, 10)) },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        points: { show: true, size: 5 },
        value: s.value,
      })),
    ],
  };
  return new uPlot(opts, data, holder);
}

function chartCard(ctx, id, heading, description) {
  const holder = ctx.el("div", { class: "lf-chart", id, role: "img", "aria-label": description });
  const card = ctx.el("section", { class: "card lf-chart-card" }, ctx.el("h2", {}, heading), holder);
  return { card, holder };
}

function figure(ctx, id, label, value, note) {
  return ctx.el(
    "div",
    { class: "lf-figure", id },
    ctx.el("dt", {}, label),
    ctx.el("dd", {}, ctx.el("span", { class: "lf-figure-value" }, value), note ? ctx.el("small", {}, note) : ""),
  );
}

/** A distribution as a table with a <meter> per row (no inline styles needed). */
function distribution(ctx, id, heading, entries, emptyText) {
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  const body = entries.length
    ? table(
        ctx,
        ["", "count", "share"],
        entries.map(([name, n]) => {
          const meter = ctx.el("meter", { min: "0", max: String(Math.max(total, 1)), value: String(n) });
          meter.setAttribute("aria-label", `${name}: ${n} of ${total}`);
          return [String(name).replaceAll("_", " "), fmtNumber(n), ctx.el("span", { class: "lf-share" }, meter, ` ${total ? fmtPercent(n / total) : "–"}`)];
        }),
        { className: "table compact lf-dist" },
      )
    : ctx.el("p", { class: "muted" }, emptyText);
  return ctx.el("section", { class: "card", id }, ctx.el("h2", {}, heading), body);
}

function sortedEntries(obj, order) {
  const entries = Object.entries(obj || {}).map(([k, v]) => [k, Number(v) || 0]);
  if (order) {
    const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
    return entries.sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].localeCompare(b[0]));
  }
  return entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

function messagesChart(ctx, numbers, charts, grid) {
  const days = numbers.messages_per_day || [];
  const { card, holder } = chartCard(ctx, "chart-messages", "Messages per day", "Messages in and out per day");
  grid.append(card);
  charts.push(
    makeChart(ctx, holder, {
      title: "",
      yLabel: "messages",
      series: [{ label: "in" }, { label: "out" }],
      data: [days.map((d) => daySeconds(d.day)), days.map((d) => d.in ?? 0), days.map((d) => d.out ?? 0)],
    }),
  );
}

function costChart(ctx, numbers, charts, grid) {
  const cost = numbers.model_cost || {};
  const perDay = cost.per_day || [];
  const models = [...new Set(perDay.flatMap((d) => Object.keys(d.by_model || {})))].sort();
  const { card, holder } = chartCard(ctx, "chart-cost", "Model cost per day", "Model cost per day, one line per model");
  card.append(
    ctx.el("p", { class: "muted", id: "cost-per-message" }, `Per message: ${fmtUsd(cost.per_message_usd)}`),
  );
  grid.append(card);
  const series = models.length ? models.map((m) => ({ label: m })) : [{ label: "all models" }];
  const columns = models.length
    ? models.map((m) => perDay.map((d) => (d.by_model || {})[m] ?? 0))
    : [perDay.map(() => 0)];
  charts.push(
    makeChart(ctx, holder, {
      title: "",
      yLabel: "USD",
      values: (_u, ticks) => ticks.map((t) => `$${t.toFixed(t < 1 ? 3 : 2)}`),
      series: series.map((s) => ({ ...s, value: (_u, v) => (v === null ? "–" : fmtUsd(v)) })),
      data: [perDay.map((d) => daySeconds(d.day)), ...columns],
    }),
  );
}

function enrichmentChart(ctx, numbers, charts, grid) {
  const enrichment = numbers.enrichment || {};
  const perDay = enrichment.per_day || [];
  const { card, holder } = chartCard(ctx, "chart-enrichment", "Enrichment per day", "Enrichment records done and failed per day");
  grid.append(card);
  charts.push(
    makeChart(ctx, holder, {
      title: "",
      yLabel: "records",
      series: [{ label: "done" }, { label: "failed" }],
      data: [perDay.map((d) => daySeconds(d.day)), perDay.map((d) => d.done ?? 0), perDay.map((d) => d.failed ?? 0)],
    }),
  );
}

function figures(ctx, n) {
  const first = n.first_reply_seconds || {};
  const esc = n.escalations || {};
  const crm = n.crm_sync || {};
  const days = n.messages_per_day || [];
  const totalIn = days.reduce((s, d) => s + (d.in || 0), 0);
  const totalOut = days.reduce((s, d) => s + (d.out || 0), 0);
  return ctx.el(
    "dl",
    { class: "lf-figures", id: "dashboard-figures" },
    figure(ctx, "fig-messages", "Messages in / out", `${fmtNumber(totalIn)} / ${fmtNumber(totalOut)}`),
    figure(ctx, "fig-first-reply-median", "First reply, median", fmtSeconds(first.median), `${fmtNumber(first.count ?? 0)} conversations`),
    figure(ctx, "fig-first-reply-p90", "First reply, p90", fmtSeconds(first.p90)),
    figure(ctx, "fig-escalation-rate", "Escalation rate", fmtPercent(esc.rate)),
    figure(ctx, "fig-meetings", "Meetings booked", fmtNumber(n.meetings_booked ?? 0)),
    figure(ctx, "fig-test-drives", "Test drives booked", fmtNumber(n.test_drives_booked ?? 0)),
    figure(
      ctx,
      "fig-crm-sync",
      "CRM sync success",
      crm.runs ? fmtPercent(crm.success_rate) : "–",
      `${fmtNumber(crm.runs ?? 0)} runs, ${fmtNumber(crm.failed ?? 0)} failed`,
    ),
  );
}

function periodText(period, days) {
  if (period && period.since && period.until) {
    return `${period.since} – ${period.until}${period.timezone ? ` (${period.timezone})` : ""}`;
  }
  return `last ${days} days`;
}

export async function render(root, ctx) {
  usePageStyles();
  useStylesheet("/console/vendor/uPlot.min.css");
  const initial = Number(ctx.query && ctx.query.get("days"));
  let days = PERIODS.includes(initial) ? initial : 30;
  let charts = [];
  let generation = 0;

  const select = ctx.el("select", { id: "dashboard-period", name: "days" }, ...PERIODS.map((d) => ctx.el("option", { value: String(d) }, `Last ${d} days`)));
  select.value = String(days);
  const periodNote = ctx.el("p", { class: "muted", id: "dashboard-period-text", "aria-live": "polite" });
  const errors = errorBox(ctx);
  const body = ctx.el("div", { class: "lf-dashboard", id: "dashboard-body", "aria-busy": "true" });
  root.replaceChildren(
    ctx.el(
      "div",
      { class: "lf-page lf-dashboard-page" },
      ctx.el(
        "header",
        { class: "lf-page-head" },
        ctx.el("h1", {}, "Dashboard"),
        ctx.el("div", { class: "lf-toolbar" }, field(ctx, "Period", select).node),
      ),
      periodNote,
      errors.node,
      body,
    ),
  );

  function destroyCharts() {
    for (const chart of charts) chart.destroy();
    charts = [];
  }

  async function load() {
    const mine = ++generation;
    errors.clear();
    body.setAttribute("aria-busy", "true");
    let numbers;
    try {
      numbers = await ctx.api("GET", `/api/v1/dashboard?days=${days}`);
    } catch (err) {
      if (mine !== generation) return;
      destroyCharts();
      body.replaceChildren();
      body.setAttribute("aria-busy", "false");
      if (err && (err.status === 404 || err.status === 405)) {
        errors.show({ title: "The dashboard's numbers are not available on this server yet", detail: `GET /api/v1/dashboard answered ${err.status}` });
      } else {
        errors.show(err, "Could not load the dashboard");
      }
      return;
    }
    if (mine !== generation || !root.isConnected) return;
    destroyCharts();
    periodNote.textContent = `Period: ${periodText(numbers.period, days)}`;
    const grid = ctx.el("div", { class: "lf-chart-grid" });
    const enrichment = numbers.enrichment || {};
    body.replaceChildren(
      figures(ctx, numbers),
      grid,
      ctx.el(
        "div",
        { class: "lf-dist-grid" },
        distribution(ctx, "dist-quality", "Lead quality", sortedEntries(numbers.lead_quality, QUALITY_ORDER), "No scored leads in this period."),
        distribution(
          ctx,
          "dist-funnel",
          "Funnel by stage",
          (numbers.funnel || []).map((s) => [s.stage, Number(s.count) || 0]),
          "No conversations in this period.",
        ),
        distribution(ctx, "dist-escalations", "Escalations by rule", sortedEntries((numbers.escalations || {}).by_rule), "No escalations in this period."),
        distribution(ctx, "dist-failures", "Enrichment failure reasons", sortedEntries(enrichment.failure_reasons), "No failed records in this period."),
      ),
    );
    messagesChart(ctx, numbers, charts, grid);
    costChart(ctx, numbers, charts, grid);
    enrichmentChart(ctx, numbers, charts, grid);
    body.setAttribute("aria-busy", "false");
  }

  select.addEventListener("change", () => {
    days = Number(select.value);
    // The period is part of the address: a reload or a shared link shows the same one.
    if (ctx.setQuery) ctx.setQuery(new URLSearchParams({ days: String(days) }));
    load();
  });

  // Charts follow their card's width (the 1280 px desktop and a 390 px phone alike).
  // Resized in the next frame, and only when the width changed: resizing inside the observer's
  // callback would re-trigger it ("ResizeObserver loop" errors).
  let frame = 0;
  const resize = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      for (const chart of charts) {
        const holder = chart.root.parentElement;
        const width = holder ? chartWidth(holder) : 0;
        if (width && width !== chart.width) chart.setSize({ width, height: 220 });
      }
    });
  });
  resize.observe(root);

  // New messages, stage changes and handoffs change the numbers: reload, at most every few
  // seconds (a burst of live events is one reload).
  let live = 0;
  const onLive = () => {
    clearTimeout(live);
    live = setTimeout(load, 3000);
  };
  if (ctx.events) ctx.events.addEventListener("conversation", onLive);

  await load();
  return () => {
    clearTimeout(live);
    if (ctx.events) ctx.events.removeEventListener("conversation", onLive);
    generation += 1;
    cancelAnimationFrame(frame);
    resize.disconnect();
    destroyCharts();
  };
}
