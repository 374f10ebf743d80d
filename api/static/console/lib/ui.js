// Shared helpers of the console's jobs, campaigns, settings and dashboard pages.
// Everything from the API is written as text (ctx.el children / textContent), never as HTML.

const STYLESHEETS = new Set();

/** Load a stylesheet once (a <link>: the CSP allows 'self' stylesheets, not inline <style>). */
export function useStylesheet(href) {
  if (STYLESHEETS.has(href) || document.querySelector(`link[href="${href}"]`)) return;
  STYLESHEETS.add(href);
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  document.head.append(link);
}

/** The page styles of these four pages. */
export function usePageStyles() {
  useStylesheet("/console/pages/pages.css");
}

export const canOperate = (ctx) => ctx.user && ctx.user.role !== "viewer";
export const isAdmin = (ctx) => ctx.user && ctx.user.role === "admin";

let uid = 0;
/** A fresh id for a label's `for`. */
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** One problem of an error's detail as a line of text (the API's shapes: pydantic's
 * {loc,msg}, the CSV's {line,problem}, the CRM's {field,problem}, or plain text). */
function describeProblem(problem) {
  if (problem === null || problem === undefined) return "";
  if (typeof problem !== "object") return String(problem);
  if (problem.line !== undefined && problem.problem !== undefined) {
    return problem.line === null ? problem.problem : `line ${problem.line}: ${problem.problem}`;
  }
  if (problem.field !== undefined && problem.problem !== undefined) {
    return `${problem.field}: ${problem.problem}`;
  }
  if (problem.loc) {
    const where = problem.loc.filter((part) => part !== "body").join(".");
    const line = problem.line !== undefined && problem.line !== null ? ` (line ${problem.line})` : "";
    return `${where}${line}: ${problem.msg ?? problem.message ?? ""}`;
  }
  if (problem.message) return problem.line ? `line ${problem.line}: ${problem.message}` : problem.message;
  return JSON.stringify(problem);
}

/** The problems of an error's detail as a list. */
function problemsOf(err) {
  const detail = err && err.detail;
  if (detail === null || detail === undefined) return [];
  if (Array.isArray(detail)) return detail;
  if (typeof detail === "string" && err.title && detail === err.title) return [];
  return [detail];
}

/** A title for any error: ApiError{status,title,detail} or anything thrown. */
function errorTitle(err) {
  if (err && err.title) return err.status ? `${err.title} (${err.status})` : err.title;
  return String(err && err.message ? err.message : err);
}

/** An alert box that shows an error with its problems, or nothing. */
export function errorBox(ctx) {
  const box = ctx.el("div", { class: "notice error", role: "alert" });
  box.hidden = true;
  return {
    node: box,
    show(err, prefix) {
      const title = ctx.el("strong", {}, prefix ? `${prefix}: ${errorTitle(err)}` : errorTitle(err));
      const items = problemsOf(err).map((p) => ctx.el("li", {}, describeProblem(p)));
      box.replaceChildren(title, ...(items.length ? [ctx.el("ul", {}, ...items)] : []));
      box.hidden = false;
    },
    clear() {
      box.hidden = true;
      box.replaceChildren();
    },
  };
}

/** A message for a section whose endpoint this server does not have (yet), else the error. */
export function unavailable(ctx, err, what) {
  if (err && (err.status === 404 || err.status === 405)) {
    return ctx.el(
      "p",
      { class: "lf-unavailable", role: "status" },
      `${what} is not available on this server (${err.status} from the API).`,
    );
  }
  const box = errorBox(ctx);
  box.show(err, `Could not load ${what.toLowerCase()}`);
  return box.node;
}

/** A labelled control: returns {node, input}. `input` is built by the caller. */
export function field(ctx, label, input, hint) {
  if (!input.id) input.id = newId("f");
  const children = [ctx.el("label", { for: input.id }, label), input];
  if (hint) {
    const hintId = newId("hint");
    input.setAttribute("aria-describedby", hintId);
    children.push(ctx.el("small", { id: hintId, class: "lf-hint" }, hint));
  }
  return { node: ctx.el("div", { class: "field" }, ...children), input };
}

/** A text-like input with a label. */
export function textField(ctx, label, { type = "text", value = "", name, hint, ...attrs } = {}) {
  const input = ctx.el("input", { type, name: name || label, ...attrs });
  if (value !== null && value !== undefined) input.value = String(value);
  return field(ctx, label, input, hint);
}

/** A <select> with a label; options are [value, text] pairs or strings. */
export function selectField(ctx, label, options, { value, name, hint } = {}) {
  const select = ctx.el(
    "select",
    { name: name || label },
    ...options.map((opt) => {
      const [v, text] = Array.isArray(opt) ? opt : [opt, opt];
      return ctx.el("option", { value: v }, text);
    }),
  );
  if (value !== undefined && value !== null) select.value = String(value);
  return field(ctx, label, select, hint);
}

/** A checkbox with its label after it. */
export function checkField(ctx, label, checked, { name } = {}) {
  const input = ctx.el("input", { type: "checkbox", name: name || label });
  input.id = newId("c");
  input.checked = Boolean(checked);
  return {
    node: ctx.el("div", { class: "field check" }, input, ctx.el("label", { for: input.id }, label)),
    input,
  };
}

/** A button; `onClick` may be async: the button is disabled while it runs. */
export function button(ctx, text, onClick, { kind = "", type = "button", label } = {}) {
  const node = ctx.el("button", { type, class: kind || null }, text);
  if (label) node.setAttribute("aria-label", label);
  if (onClick) {
    node.addEventListener("click", async (event) => {
      if (type === "submit") return;
      event.preventDefault();
      node.disabled = true;
      try {
        await onClick(event);
      } finally {
        if (node.isConnected) node.disabled = false;
      }
    });
  }
  return node;
}

/** A form whose submit runs `onSubmit` (disabled submit buttons meanwhile). */
export function form(ctx, attrs, onSubmit, ...children) {
  const node = ctx.el("form", { novalidate: "", ...attrs }, ...children);
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submits = [...node.querySelectorAll("button[type=submit]")];
    submits.forEach((b) => (b.disabled = true));
    try {
      await onSubmit(event);
    } finally {
      submits.forEach((b) => (b.disabled = false));
    }
  });
  return node;
}

/** A table: `columns` are header texts; `rows` are arrays of cells (text or nodes). */
export function table(ctx, columns, rows, { caption, className = "table" } = {}) {
  const head = ctx.el("thead", {}, ctx.el("tr", {}, ...columns.map((c) => ctx.el("th", { scope: "col" }, c))));
  const body = ctx.el(
    "tbody",
    {},
    ...rows.map((cells) => ctx.el("tr", {}, ...cells.map((cell) => ctx.el("td", {}, cellContent(cell))))),
  );
  const parts = caption ? [ctx.el("caption", {}, caption), head, body] : [head, body];
  return ctx.el("div", { class: "table-wrap" }, ctx.el("table", { class: className }, ...parts));
}

function cellContent(cell) {
  if (cell === null || cell === undefined) return "";
  if (cell instanceof Node) return cell;
  return String(cell);
}

export function fmtNumber(n, digits = 0) {
  if (typeof n !== "number" || Number.isNaN(n)) return "–";
  return n.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtPercent(ratio) {
  if (typeof ratio !== "number" || Number.isNaN(ratio)) return "–";
  return `${(ratio * 100).toFixed(1)}%`;
}

export function fmtUsd(usd) {
  if (typeof usd !== "number" || Number.isNaN(usd)) return "–";
  return usd < 1 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function fmtSeconds(seconds) {
  if (typeof seconds !== "number" || Number.isNaN(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

export function fmtDate(value) {
  if (!value) return "–";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

/** A status badge. */
export function badge(ctx, text, kind) {
  return ctx.el("span", { class: `badge ${kind || String(text).replace(/[^a-z_]/gi, "")}` }, String(text));
}

/** Tabs (WAI-ARIA tabs pattern: arrow keys move between tabs). `tabs` = [{id, label, render}];
 * `render(panel)` fills the panel each time the tab is shown (and on `refresh`). */
export function tabset(ctx, tabs, { onChange } = {}) {
  const list = ctx.el("div", { role: "tablist", class: "lf-tabs", "aria-label": "Settings sections" });
  const panels = ctx.el("div", { class: "lf-tabpanels" });
  const buttons = new Map();
  const panelById = new Map();
  let current = null;

  async function show(id, { focus = false } = {}) {
    if (!buttons.has(id)) id = tabs[0].id;
    current = id;
    for (const tab of tabs) {
      const selected = tab.id === id;
      const btn = buttons.get(tab.id);
      btn.setAttribute("aria-selected", String(selected));
      btn.tabIndex = selected ? 0 : -1;
      panelById.get(tab.id).hidden = !selected;
    }
    if (focus) buttons.get(id).focus();
    if (onChange) onChange(id);
    // Rendered afresh each time it is shown: another tab may have changed what it shows (the
    // quiet hours tab writes the playbook).
    const panel = panelById.get(id);
    if (panel.dataset.shown === "1") return;
    for (const other of panelById.values()) other.dataset.shown = "0";
    panel.dataset.shown = "1";
    panel.replaceChildren(ctx.el("p", { class: "muted", role: "status" }, "Loading…"));
    await renderInto(id, panel);
  }

  // Busy while it loads; `data-renders` counts finished renders (a test waits for the next).
  async function renderInto(id, panel) {
    panel.setAttribute("aria-busy", "true");
    try {
      await tabs.find((t) => t.id === id).render(panel);
    } finally {
      panel.setAttribute("aria-busy", "false");
      panel.dataset.renders = String(Number(panel.dataset.renders || 0) + 1);
    }
  }

  tabs.forEach((tab, index) => {
    const btn = ctx.el(
      "button",
      { type: "button", role: "tab", id: `tab-${tab.id}`, "aria-controls": `panel-${tab.id}`, class: "lf-tab" },
      tab.label,
    );
    btn.addEventListener("click", () => show(tab.id));
    btn.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) {
        event.preventDefault();
        show(tabs[(index + step + tabs.length) % tabs.length].id, { focus: true });
      } else if (event.key === "Home" || event.key === "End") {
        event.preventDefault();
        show(tabs[event.key === "Home" ? 0 : tabs.length - 1].id, { focus: true });
      }
    });
    buttons.set(tab.id, btn);
    list.append(btn);
    const panel = ctx.el("section", {
      role: "tabpanel",
      id: `panel-${tab.id}`,
      "aria-labelledby": `tab-${tab.id}`,
      class: "lf-tabpanel",
      tabindex: "0",
    });
    panel.hidden = true;
    panelById.set(tab.id, panel);
    panels.append(panel);
  });

  return {
    node: ctx.el("div", { class: "lf-tabset" }, list, panels),
    show,
    get current() {
      return current;
    },
    /** Render the tab again; what it shows stays until the new content replaces it. */
    async refresh(id) {
      await renderInto(id, panelById.get(id));
    },
  };
}

/** The CSRF token the sign-in left in its (readable) cookie. */
function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "leadflow_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** fetch for what ctx.api does not carry (multipart uploads, raw text bodies, non-JSON answers):
 * same origin with the session cookie and the CSRF header; throws ApiError-like objects. */
export async function rawFetch(ctx, method, path, { body, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { ...headers } };
  if (body !== undefined) init.body = body;
  if (!["GET", "HEAD"].includes(method)) init.headers["X-CSRF-Token"] = csrfToken();
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw { status: 0, title: "cannot reach the leadflow API", detail: String(err) };
  }
  if (!response.ok) {
    let title = `${response.status} ${response.statusText}`;
    let detail = null;
    try {
      const payload = await response.json();
      if (payload && payload.error) title = payload.error;
      detail = payload ? payload.detail : null;
    } catch (_) {
      // not JSON: keep the status line
    }
    if (response.status === 401 && ctx.navigate) ctx.navigate("#/signin");
    throw { status: response.status, title, detail };
  }
  return response;
}

/** Ask before something that cannot be undone. */
export function confirmAction(text) {
  return window.confirm(text);
}
