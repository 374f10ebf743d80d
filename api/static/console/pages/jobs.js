// Enrichment jobs inside the console: upload a CSV, follow the job's progress, pause / resume /
// cancel it, download the results, read the failed records. The behaviour of the plain page at
// /app (api/static/app.js), signed in instead of with a typed API key.
import {
  badge,
  button,
  canOperate,
  confirmAction,
  errorBox,
  field,
  fmtDate,
  fmtNumber,
  fmtSeconds,
  fmtUsd,
  form,
  rawFetch,
  table,
  textField,
  usePageStyles,
} from "../lib/ui.js";

const POLL_MS = 1000;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export async function render(root, ctx) {
  usePageStyles();
  const writer = canOperate(ctx);
  const state = { jobId: null, timer: null, alive: true, generation: 0 };
  const errors = errorBox(ctx);

  // ---- the upload form (operators and admins) ----
  const file = ctx.el("input", { type: "file", id: "jobs-file", name: "file", accept: ".csv,text/csv", required: "" });
  const concurrency = textField(ctx, "Concurrency", { type: "number", id: "jobs-concurrency", min: "1", placeholder: "default" });
  const playbook = textField(ctx, "Playbook", { id: "jobs-playbook", placeholder: "default" });
  const uploadButton = ctx.el("button", { type: "submit", id: "jobs-upload", class: "primary" }, "Upload and start");
  const uploadForm = form(
    ctx,
    { id: "jobs-upload-form", class: "lf-form" },
    upload,
    field(ctx, "CSV of leads (company name, website/domain or e-mail column)", file).node,
    ctx.el("div", { class: "lf-row" }, concurrency.node, playbook.node),
    ctx.el("div", { class: "lf-actions" }, uploadButton),
  );

  // ---- the followed job ----
  const jobTitle = ctx.el("code", { id: "job-id" });
  const jobStatus = ctx.el("span", { id: "job-status", class: "badge" });
  const jobFile = ctx.el("p", { class: "muted", id: "job-file" });
  const bar = ctx.el("progress", { id: "job-progress", max: "100", value: "0" });
  bar.setAttribute("aria-label", "Job progress");
  const progressText = ctx.el("p", { id: "job-progress-text", "aria-live": "polite" }, "0%");
  const stats = ctx.el("p", { class: "muted", id: "job-stats" });
  const pause = button(ctx, "Pause", () => control("pause"));
  pause.id = "job-pause";
  const resume = button(ctx, "Resume", () => control("resume"));
  resume.id = "job-resume";
  const cancel = button(ctx, "Cancel job", () => control("cancel"), { kind: "danger" });
  cancel.id = "job-cancel";
  const download = ctx.el("a", { id: "job-download", class: "button", href: "#" }, "Download results");
  download.hidden = true;
  const failuresBody = ctx.el("div", { id: "job-failures" });
  const failures = ctx.el("div", { id: "job-failures-section" }, ctx.el("h3", {}, "Failed records"), failuresBody);
  failures.hidden = true;
  const jobSection = ctx.el(
    "section",
    { class: "card", id: "job-section", "aria-labelledby": "job-heading" },
    ctx.el("h2", { id: "job-heading" }, "Job ", jobTitle, " ", jobStatus),
    jobFile,
    bar,
    progressText,
    stats,
    ctx.el("div", { class: "lf-actions" }, ...(writer ? [pause, resume, cancel] : []), download),
    failures,
  );
  jobSection.hidden = true;

  // ---- recent jobs ----
  const list = ctx.el("div", { id: "jobs-list" });
  const refresh = button(ctx, "Refresh", () => loadJobs(), { kind: "secondary small" });
  refresh.id = "jobs-refresh";

  root.replaceChildren(
    ctx.el(
      "div",
      { class: "lf-page lf-jobs-page" },
      ctx.el("header", { class: "lf-page-head" }, ctx.el("h1", {}, "Enrichment jobs")),
      writer
        ? ctx.el("section", { class: "card", "aria-labelledby": "jobs-upload-heading" }, ctx.el("h2", { id: "jobs-upload-heading" }, "Enrich a CSV"), uploadForm)
        : ctx.el("p", { class: "muted" }, "Your role can read jobs, not start them."),
      errors.node,
      jobSection,
      ctx.el("section", { class: "card", "aria-labelledby": "jobs-list-heading" }, ctx.el("h2", { id: "jobs-list-heading" }, "Recent jobs ", refresh), list),
    ),
  );

  function renderJob(job) {
    jobSection.hidden = false;
    jobTitle.textContent = job.id;
    jobStatus.textContent = job.status;
    jobStatus.className = `badge ${job.status}`;
    jobFile.textContent = job.filename ? `${job.filename} · started ${fmtDate(job.created_at)}` : "";
    const counts = job.counts || {};
    const finished = (counts.done || 0) + (counts.failed || 0);
    const total = job.total || 0;
    const pct = total ? Math.floor((finished / total) * 100) : 0;
    bar.value = pct;
    bar.setAttribute("aria-valuenow", String(pct));
    progressText.textContent = `${pct}% · ${finished} / ${total} records`;
    const rate = typeof job.throughput_per_s === "number" ? job.throughput_per_s.toFixed(1) : "–";
    const cost = job.cost || {};
    stats.textContent =
      `${counts.done || 0} done · ${counts.failed || 0} failed · ${counts.running || 0} running · ` +
      `${counts.pending || 0} pending · ${rate} records/s · ETA ${fmtSeconds(job.eta_seconds)} · ` +
      `${cost.input_tokens || 0}+${cost.output_tokens || 0} tokens (${fmtUsd(cost.usd)})`;
    const terminal = TERMINAL.has(job.status);
    pause.disabled = terminal || job.status === "paused";
    resume.disabled = job.status !== "paused";
    cancel.disabled = terminal;
    if (terminal) {
      // Same origin with the session cookie: the browser streams the CSV itself, under the
      // name the API gives it (Content-Disposition).
      download.href = `/api/v1/jobs/${encodeURIComponent(job.id)}/results`;
      download.hidden = false;
    }
  }

  async function loadFailures(job) {
    const failed = (job.counts && job.counts.failed) || 0;
    failures.hidden = failed === 0;
    if (failed === 0) return;
    const payload = await ctx.api("GET", `/api/v1/jobs/${encodeURIComponent(job.id)}/records?status=failed&limit=200`);
    const rows = (payload.records || []).map((r) => [
      r.row_number,
      r.input && typeof r.input === "object" ? Object.values(r.input).filter(Boolean).join(", ") : "",
      r.error || "",
    ]);
    failuresBody.replaceChildren(table(ctx, ["Row", "Input", "Reason"], rows, { caption: `${failed} failed` }));
  }

  function stopPolling() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
  }

  async function poll() {
    const jobId = state.jobId;
    const mine = state.generation;
    if (!jobId || !state.alive) return;
    try {
      const job = await ctx.api("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`);
      if (mine !== state.generation || !state.alive) return;
      renderJob(job);
      if (TERMINAL.has(job.status)) {
        stopPolling();
        await loadFailures(job);
        await loadJobs();
        return;
      }
    } catch (err) {
      if (mine !== state.generation || !state.alive) return;
      errors.show(err, "Could not read the job");
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  function follow(jobId) {
    stopPolling();
    errors.clear();
    state.generation += 1;
    state.jobId = jobId;
    // The followed job is part of the address: a reload follows it again.
    if (ctx.setQuery) ctx.setQuery(new URLSearchParams({ job: jobId }));
    download.hidden = true;
    failures.hidden = true;
    poll();
  }

  async function loadJobs() {
    try {
      const payload = await ctx.api("GET", "/api/v1/jobs");
      if (!state.alive) return;
      const jobs = payload.jobs || [];
      if (!jobs.length) {
        list.replaceChildren(ctx.el("p", { class: "muted" }, "No jobs yet."));
        return;
      }
      list.replaceChildren(
        table(
          ctx,
          ["Job", "File", "Status", "Done", "Failed", "Total", "Started"],
          jobs.map((job) => {
            const open = ctx.el("button", { type: "button", class: "lf-link", "aria-label": `Follow job ${job.id}` }, job.id);
            open.addEventListener("click", () => follow(job.id));
            const counts = job.counts || {};
            return [open, job.filename, badge(ctx, job.status), fmtNumber(counts.done || 0), fmtNumber(counts.failed || 0), fmtNumber(job.total || 0), fmtDate(job.created_at)];
          }),
        ),
      );
    } catch (err) {
      if (state.alive) errors.show(err, "Could not list the jobs");
    }
  }

  async function control(action) {
    if (!state.jobId) return;
    errors.clear();
    const path = `/api/v1/jobs/${encodeURIComponent(state.jobId)}`;
    try {
      if (action === "cancel") {
        if (!confirmAction("Cancel this job? Finished records are kept.")) return;
        await ctx.api("DELETE", path);
      } else {
        await ctx.api("POST", `${path}/${action}`);
      }
      ctx.toast && ctx.toast(`Job ${action === "cancel" ? "cancelled" : action === "pause" ? "paused" : "resumed"}`);
    } catch (err) {
      errors.show(err, `Could not ${action} the job`);
    }
    if (!state.timer) follow(state.jobId);
  }

  async function upload() {
    errors.clear();
    const chosen = file.files[0];
    if (!chosen) {
      errors.show({ title: "Choose a CSV file first." });
      file.focus();
      return;
    }
    const body = new FormData();
    body.append("file", chosen, chosen.name);
    const width = concurrency.input.value.trim();
    if (width) body.append("concurrency", width);
    const name = playbook.input.value.trim();
    if (name) body.append("playbook", name);
    try {
      // Multipart: the browser writes the boundary, so this goes around ctx.api's JSON body.
      const response = await rawFetch(ctx, "POST", "/api/v1/jobs", { body });
      const created = await response.json();
      follow(created.job_id);
      await loadJobs();
    } catch (err) {
      if (err && err.status === 413) err = { ...err, title: `File too big: ${err.title}` };
      errors.show(err, "Upload refused");
    }
  }

  await loadJobs();
  const wanted = ctx.query && ctx.query.get("job");
  if (wanted) follow(wanted);
  return () => {
    state.alive = false;
    stopPolling();
  };
}
