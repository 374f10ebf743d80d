// leadflow web page: plain JavaScript against the /api/v1/jobs endpoints. No build step, no CDN.
// Every value from the API is written with textContent, never innerHTML.
"use strict";

const KEY_STORAGE = "leadflow.apiKey";
const POLL_MS = 1000;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const state = { jobId: null, timer: null, downloadUrl: null, job: null };

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

class ApiProblem extends Error {
  constructor(title, detail) {
    super(title);
    this.title = title;
    this.detail = detail;
  }
}

async function api(method, path, body) {
  const key = apiKey();
  if (!key) throw new ApiProblem("Enter your API key first.", null);
  let response;
  try {
    response = await fetch(path, {
      method,
      body,
      headers: { Authorization: `Bearer ${key}` },
    });
  } catch (err) {
    throw new ApiProblem("Cannot reach the leadflow API.", String(err));
  }
  if (!response.ok) {
    let error = `${response.status} ${response.statusText}`;
    let detail = null;
    try {
      const payload = await response.json();
      if (payload && payload.error) error = payload.error;
      detail = payload ? payload.detail : null;
    } catch (_) {
      // not JSON: keep the status line
    }
    if (response.status === 401) error = `API key refused: ${error}`;
    if (response.status === 413) error = `File too big: ${error}`;
    throw new ApiProblem(error, detail);
  }
  return response;
}

function describe(problem) {
  if (problem === null || problem === undefined) return "";
  if (typeof problem !== "object") return String(problem);
  if (problem.line !== undefined) return `line ${problem.line}: ${problem.problem ?? ""}`;
  if (problem.loc) return `${problem.loc.join(".")}: ${problem.msg ?? ""}`;
  return JSON.stringify(problem);
}

function showError(err) {
  const box = $("error");
  $("error-title").textContent = err instanceof ApiProblem ? err.title : String(err);
  const list = $("error-detail");
  list.replaceChildren();
  const detail = err instanceof ApiProblem ? err.detail : null;
  const items = Array.isArray(detail) ? detail : detail ? [detail] : [];
  for (const item of items) {
    const li = document.createElement("li");
    li.textContent = describe(item);
    list.append(li);
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function refreshKeyState() {
  const key = apiKey();
  $("key-state").textContent = key ? `saved (…${key.slice(-4)})` : "not set";
  $("api-key").value = key;
}

function fmtEta(seconds) {
  if (typeof seconds !== "number" || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

function renderJob(job) {
  state.job = job;
  $("job-section").hidden = false;
  $("job-id").textContent = job.id;
  const badge = $("job-status");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  $("job-file").textContent = job.filename ? `${job.filename} · started ${job.created_at}` : "";
  const counts = job.counts || {};
  const finished = (counts.done || 0) + (counts.failed || 0);
  const total = job.total || 0;
  const pct = total ? Math.floor((finished / total) * 100) : 0;
  $("progress-bar").style.width = `${pct}%`;
  $("progress").setAttribute("aria-valuenow", String(pct));
  $("progress-text").textContent = `${pct}% · ${finished} / ${total} records`;
  const rate = typeof job.throughput_per_s === "number" ? job.throughput_per_s.toFixed(1) : "–";
  const cost = job.cost || {};
  const usd = typeof cost.usd === "number" ? `$${cost.usd.toFixed(4)}` : "–";
  $("job-stats").textContent =
    `${counts.done || 0} done · ${counts.failed || 0} failed · ${counts.running || 0} running · ` +
    `${counts.pending || 0} pending · ${rate} records/s · ETA ${fmtEta(job.eta_seconds)} · ` +
    `${cost.input_tokens || 0}+${cost.output_tokens || 0} tokens (${usd})`;
  const terminal = TERMINAL.has(job.status);
  $("pause").disabled = terminal || job.status === "paused";
  $("resume").disabled = job.status !== "paused";
  $("cancel").disabled = terminal;
}

async function loadDownload(job) {
  const response = await api("GET", `/api/v1/jobs/${encodeURIComponent(job.id)}/results`);
  const blob = await response.blob();
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  state.downloadUrl = URL.createObjectURL(blob);
  const link = $("download");
  const base = (job.filename || "leads.csv").replace(/\.csv$/i, "");
  link.href = state.downloadUrl;
  link.download = `${base}.enriched.csv`;
  link.hidden = false;
}

async function loadFailures(job) {
  const failed = (job.counts && job.counts.failed) || 0;
  $("failures-section").hidden = failed === 0;
  $("failures-count").textContent = String(failed);
  if (failed === 0) return;
  const response = await api(
    "GET",
    `/api/v1/jobs/${encodeURIComponent(job.id)}/records?status=failed`,
  );
  const payload = await response.json();
  const body = $("failures").tBodies[0];
  body.replaceChildren();
  for (const record of payload.records || []) {
    const tr = document.createElement("tr");
    const input = record.input && typeof record.input === "object"
      ? Object.values(record.input).filter(Boolean).join(", ")
      : "";
    for (const [text, cls] of [[record.row_number, ""], [input, ""], [record.error, "reason"]]) {
      const td = document.createElement("td");
      td.textContent = text === null || text === undefined ? "" : String(text);
      if (cls) td.className = cls;
      tr.append(td);
    }
    body.append(tr);
  }
}

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

async function poll() {
  const jobId = state.jobId;
  if (!jobId) return;
  try {
    const response = await api("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`);
    const job = await response.json();
    if (jobId !== state.jobId) return; // another job was selected meanwhile
    renderJob(job);
    if (TERMINAL.has(job.status)) {
      stopPolling();
      await loadFailures(job);
      await loadDownload(job);
      loadJobs();
      return;
    }
  } catch (err) {
    showError(err);
  }
  state.timer = setTimeout(poll, POLL_MS);
}

function follow(jobId) {
  stopPolling();
  clearError();
  state.jobId = jobId;
  $("download").hidden = true;
  $("failures-section").hidden = true;
  poll();
}

async function loadJobs() {
  if (!apiKey()) return;
  try {
    const response = await api("GET", "/api/v1/jobs");
    const payload = await response.json();
    const body = $("jobs").tBodies[0];
    body.replaceChildren();
    for (const job of payload.jobs || []) {
      const tr = document.createElement("tr");
      const counts = job.counts || {};
      for (const text of [job.id, job.filename, job.status, counts.done, counts.failed, job.total]) {
        const td = document.createElement("td");
        td.textContent = text === null || text === undefined ? "" : String(text);
        tr.append(td);
      }
      tr.addEventListener("click", () => follow(job.id));
      body.append(tr);
    }
  } catch (err) {
    showError(err);
  }
}

async function control(action) {
  if (!state.jobId) return;
  clearError();
  const path = `/api/v1/jobs/${encodeURIComponent(state.jobId)}`;
  try {
    if (action === "cancel") {
      if (!window.confirm("Cancel this job? Finished records are kept.")) return;
      await api("DELETE", path);
    } else {
      await api("POST", `${path}/${action}`);
    }
  } catch (err) {
    showError(err);
  }
  if (!state.timer) follow(state.jobId);
}

async function upload(event) {
  event.preventDefault();
  clearError();
  const file = $("csv-file").files[0];
  if (!file) {
    showError(new ApiProblem("Choose a CSV file first.", null));
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const concurrency = $("concurrency").value.trim();
  if (concurrency) form.append("concurrency", concurrency);
  const playbook = $("playbook").value.trim();
  if (playbook) form.append("playbook", playbook);
  $("upload").disabled = true;
  try {
    const response = await api("POST", "/api/v1/jobs", form);
    const created = await response.json();
    follow(created.job_id);
    loadJobs();
  } catch (err) {
    showError(err);
  } finally {
    $("upload").disabled = false;
  }
}

function init() {
  refreshKeyState();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    refreshKeyState();
    clearError();
    loadJobs();
  });
  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    refreshKeyState();
  });
  $("upload-form").addEventListener("submit", upload);
  $("pause").addEventListener("click", () => control("pause"));
  $("resume").addEventListener("click", () => control("resume"));
  $("cancel").addEventListener("click", () => control("cancel"));
  $("refresh-jobs").addEventListener("click", loadJobs);
  loadJobs();
}

document.addEventListener("DOMContentLoaded", init);
