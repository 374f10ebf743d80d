// Campaigns: their progress and numbers (GET /api/v1/campaigns[/{id}]), pause / resume / cancel /
// approve (POST /api/v1/campaigns/{id}/<action>, answered with the campaign or 409 with why),
// and a new campaign from an enrichment job or a lead filter (POST /api/v1/campaigns,
// models/campaigns.py CampaignSpec).
import {
  badge,
  button,
  canOperate,
  checkField,
  confirmAction,
  errorBox,
  field,
  fmtDate,
  fmtNumber,
  fmtPercent,
  form,
  selectField,
  table,
  textField,
  usePageStyles,
} from "../lib/ui.js";

const REFRESH_MS = 5000;
const ACTIONS = {
  awaiting_approval: ["approve", "cancel"],
  running: ["pause", "cancel"],
  paused: ["resume", "cancel"],
};
const ACTION_LABEL = { approve: "Approve", pause: "Pause", resume: "Resume", cancel: "Cancel" };

function numbersList(ctx, n) {
  const rows = [
    ["Recipients", fmtNumber(n.total)],
    ["Queued", fmtNumber(n.queued)],
    ["Sent", fmtNumber(n.sent)],
    ["Skipped", fmtNumber(n.skipped)],
    ["Replied", `${fmtNumber(n.replied)} (${fmtPercent(n.reply_rate)})`],
    ["Positive replies", `${fmtNumber(n.positive_replies)} (${fmtPercent(n.positive_reply_rate)})`],
    ["Escalations", fmtNumber(n.escalations)],
    ["Meetings booked", fmtNumber(n.meetings_booked)],
    ["Opted out", fmtNumber(n.opted_out)],
    ["Bounced", fmtNumber(n.bounced)],
  ];
  return ctx.el("dl", { class: "lf-numbers" }, ...rows.flatMap(([k, v]) => [ctx.el("dt", {}, k), ctx.el("dd", {}, v)]));
}

const hhmm = (t) => String(t || "").slice(0, 5);

function describeSource(c) {
  if (c.job_id) return `enrichment job ${c.job_id}`;
  const sel = c.selection || {};
  const parts = Object.entries(sel)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${k}=${v}`);
  return parts.length ? `leads where ${parts.join(", ")}` : "all leads";
}

export async function render(root, ctx) {
  usePageStyles();
  const writer = canOperate(ctx);
  const state = { alive: true, timer: null, open: new Set(ctx.query && ctx.query.get("id") ? [ctx.query.get("id")] : []) };
  const errors = errorBox(ctx);
  const list = ctx.el("div", { id: "campaigns-list", "aria-live": "polite" });

  root.replaceChildren(
    ctx.el(
      "div",
      { class: "lf-page lf-campaigns-page" },
      ctx.el("header", { class: "lf-page-head" }, ctx.el("h1", {}, "Campaigns")),
      errors.node,
      list,
      writer ? await createSection() : ctx.el("p", { class: "muted" }, "Your role can read campaigns, not start or steer them."),
    ),
  );

  function campaignCard(c) {
    const n = c.numbers || {};
    const done = (n.sent || 0) + (n.skipped || 0);
    const bar = ctx.el("progress", { max: String(Math.max(n.total || 0, 1)), value: String(done) });
    bar.setAttribute("aria-label", `Progress of ${c.name || c.id}`);
    const actions = writer
      ? (ACTIONS[c.status] || []).map((action) => {
          const b = button(ctx, ACTION_LABEL[action], () => control(c, action), { kind: action === "cancel" ? "danger" : "", label: `${ACTION_LABEL[action]} campaign ${c.name || c.id}` });
          b.dataset.action = action;
          return b;
        })
      : [];
    const details = ctx.el("details", { class: "lf-details" }, ctx.el("summary", {}, "Numbers and settings"));
    details.open = state.open.has(c.id);
    details.addEventListener("toggle", () => (details.open ? state.open.add(c.id) : state.open.delete(c.id)));
    const skipped = Object.entries(n.skipped_by_reason || {});
    details.append(
      numbersList(ctx, n),
      skipped.length ? ctx.el("p", {}, `Skipped: ${skipped.map(([r, k]) => `${r} ${k}`).join(", ")}`) : "",
      ctx.el(
        "p",
        { class: "muted" },
        `${c.channel} · ${describeSource(c)} · ${fmtNumber(c.rate_per_hour, 1)} per hour` +
          (c.send_window ? ` · sends ${hhmm(c.send_window.start)}–${hhmm(c.send_window.end)} ${c.send_window.timezone}` : "") +
          (c.personalised ? " · personalised e-mails" : "") +
          ` · created ${fmtDate(c.created_at)}` +
          (c.finished_at ? ` · finished ${fmtDate(c.finished_at)}` : ""),
      ),
    );
    return ctx.el(
      "article",
      { class: "card lf-campaign", "data-campaign": c.id },
      ctx.el("h2", {}, c.name || c.id, " ", badge(ctx, c.status.replace("_", " "), c.status)),
      ctx.el("div", { class: "lf-progress-row" }, bar, ctx.el("span", {}, `${fmtNumber(done)} / ${fmtNumber(n.total || 0)} handled · ${fmtNumber(n.sent || 0)} sent · ${fmtNumber(n.replied || 0)} replied · ${fmtNumber(n.meetings_booked || 0)} meetings`)),
      actions.length ? ctx.el("div", { class: "lf-actions" }, ...actions) : "",
      details,
    );
  }

  async function load() {
    if (!state.alive) return;
    try {
      const payload = await ctx.api("GET", "/api/v1/campaigns");
      if (!state.alive) return;
      const campaigns = payload.campaigns || [];
      const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement : null;
      const focusKey = focused ? [focused.closest("[data-campaign]")?.dataset.campaign, focused.dataset.action] : null;
      list.replaceChildren(
        ...(campaigns.length ? campaigns.map(campaignCard) : [ctx.el("p", { class: "muted" }, "No campaigns yet.")]),
      );
      if (focusKey && focusKey[0]) {
        // A refresh must not steal a keyboard user's place.
        const again = list.querySelector(`[data-campaign="${CSS.escape(focusKey[0])}"] ${focusKey[1] ? `[data-action="${focusKey[1]}"]` : "summary"}`);
        if (again) again.focus();
      }
    } catch (err) {
      if (!state.alive) return;
      if (err && (err.status === 404 || err.status === 405)) {
        errors.show({ title: "Campaigns are not available on this server", detail: `GET /api/v1/campaigns answered ${err.status}` });
      } else {
        errors.show(err, "Could not list the campaigns");
      }
    }
    if (state.alive) {
      clearTimeout(state.timer);
      state.timer = setTimeout(load, REFRESH_MS);
    }
  }

  async function control(c, action) {
    errors.clear();
    if (action === "cancel" && !confirmAction(`Cancel campaign ${c.name || c.id}? Nothing more is sent.`)) return;
    try {
      const view = await ctx.api("POST", `/api/v1/campaigns/${encodeURIComponent(c.id)}/${action}`);
      ctx.toast && ctx.toast(`Campaign ${view.name || view.id}: ${view.status.replace("_", " ")}`);
    } catch (err) {
      errors.show(err, `Could not ${action} the campaign`);
    }
    await load();
  }

  async function createSection() {
    const createErrors = errorBox(ctx);
    const name = textField(ctx, "Name", { id: "campaign-name", maxlength: "200" });
    const source = selectField(ctx, "Recipients", [["job", "Leads of an enrichment job"], ["filter", "Leads matching a filter"]], { value: "job" });
    source.input.id = "campaign-source";
    let jobs = [];
    try {
      jobs = (await ctx.api("GET", "/api/v1/jobs")).jobs || [];
    } catch (_) {
      jobs = [];
    }
    const job = selectField(
      ctx,
      "Enrichment job",
      jobs.length ? jobs.map((j) => [j.id, `${j.filename} (${j.id}, ${j.status}, ${j.total} rows)`]) : [["", "no jobs yet"]],
    );
    job.input.id = "campaign-job";
    const quality = selectField(ctx, "Lead quality", [["", "any"], "HOT", "WARM", "COLD", "UNQUALIFIED"]);
    quality.input.id = "campaign-quality";
    const search = textField(ctx, "Search (name, company, e-mail, phone)", { id: "campaign-q", maxlength: "200" });
    const hasEmail = checkField(ctx, "Has an e-mail address", false);
    const hasPhone = checkField(ctx, "Has a phone number", false);
    const filterBox = ctx.el("fieldset", { class: "lf-fieldset" }, ctx.el("legend", {}, "Lead filter"), quality.node, search.node, hasEmail.node, hasPhone.node);
    const jobBox = ctx.el("div", {}, job.node);
    const channel = selectField(ctx, "Channel", [["email", "E-mail (SMTP)"], ["whatsapp", "WhatsApp (Meta Cloud API)"], ["waha", "WhatsApp (WAHA)"]], { value: "email" });
    channel.input.id = "campaign-channel";
    const subject = textField(ctx, "Subject", { id: "campaign-subject", maxlength: "300", hint: "May use {name}, {first_name}, {company}." });
    const text = ctx.el("textarea", { id: "campaign-text", rows: "4", maxlength: "10000" });
    const textField_ = field(ctx, "Message", text, "Empty: each lead of a job gets the personalised e-mail its enrichment wrote.");
    const rate = textField(ctx, "Messages per hour at most", { type: "number", id: "campaign-rate", min: "0.1", step: "any", value: "50" });
    const hold = checkField(ctx, "Hold for approval (nothing is sent until approved)", true);
    hold.input.id = "campaign-hold";
    const windowStart = textField(ctx, "Send from", { type: "time", id: "campaign-window-start" });
    const windowEnd = textField(ctx, "Send until", { type: "time", id: "campaign-window-end" });
    const windowZone = textField(ctx, "Time zone of the window", { id: "campaign-window-zone", placeholder: "UTC", hint: "IANA name, e.g. Europe/Amsterdam. Leave the times empty for the playbook's quiet hours." });

    function sync() {
      const byJob = source.input.value === "job";
      jobBox.hidden = !byJob;
      filterBox.hidden = byJob;
    }
    source.input.addEventListener("change", sync);
    sync();

    const result = ctx.el("div", { id: "campaign-created", "aria-live": "polite" });

    async function submit() {
      createErrors.clear();
      result.replaceChildren();
      const spec = {
        channel: channel.input.value,
        hold_for_approval: hold.input.checked,
        rate_per_hour: Number(rate.input.value || 50),
      };
      if (name.input.value.trim()) spec.name = name.input.value.trim();
      if (source.input.value === "job") {
        if (!job.input.value) {
          createErrors.show({ title: "Choose an enrichment job (or a lead filter)." });
          return;
        }
        spec.job_id = job.input.value;
      } else {
        const leads = {};
        if (quality.input.value) leads.quality = quality.input.value;
        if (search.input.value.trim()) leads.search = search.input.value.trim();
        if (hasEmail.input.checked) leads.has_email = true;
        if (hasPhone.input.checked) leads.has_phone = true;
        spec.leads = leads;
      }
      const message = {};
      if (subject.input.value.trim()) message.subject = subject.input.value.trim();
      if (text.value.trim()) message.text = text.value;
      if (Object.keys(message).length) spec.message = message;
      if (windowStart.input.value || windowEnd.input.value) {
        spec.send_window = { start: windowStart.input.value, end: windowEnd.input.value, timezone: windowZone.input.value.trim() || "UTC" };
      }
      try {
        const created = await ctx.api("POST", "/api/v1/campaigns", spec);
        const excluded = Object.entries(created.excluded || {});
        result.replaceChildren(
          ctx.el(
            "p",
            { class: "notice ok", role: "status" },
            `Created ${created.name || created.id} (${created.status.replace("_", " ")}) with ${created.numbers.total} recipient${created.numbers.total === 1 ? "" : "s"}` +
              (excluded.length ? `; not included: ${excluded.map(([r, k]) => `${r} ${k}`).join(", ")}` : "") +
              ".",
          ),
        );
        state.open.add(created.id);
        await load();
      } catch (err) {
        createErrors.show(err, "Campaign not created");
      }
    }

    return ctx.el(
      "section",
      { class: "card", "aria-labelledby": "campaign-new-heading" },
      ctx.el("h2", { id: "campaign-new-heading" }, "New campaign"),
      form(
        ctx,
        { id: "campaign-form", class: "lf-form" },
        submit,
        name.node,
        source.node,
        jobBox,
        filterBox,
        channel.node,
        subject.node,
        textField_.node,
        ctx.el("div", { class: "lf-row" }, rate.node, windowStart.node, windowEnd.node, windowZone.node),
        hold.node,
        createErrors.node,
        ctx.el("div", { class: "lf-actions" }, ctx.el("button", { type: "submit", class: "primary", id: "campaign-create" }, "Create campaign")),
      ),
      result,
    );
  }

  await load();
  return () => {
    state.alive = false;
    clearTimeout(state.timer);
  };
}
