// Settings, in tabs: channels (with "test connection"), specialists, quiet hours and time zone,
// the playbook (validated, with a preview of the offline replies), CRM integrations, knowledge
// and inventory sources, API keys, users.
//
// Secrets are write-only: the API shows a stored secret as a mask, so a secret's input is always
// empty with "set"/"not set" beside it, and an empty secret input is left out of the PATCH —
// which keeps the stored secret (models/tenant_settings_merge.py: an absent secret is kept).
// Admins change settings; operators and viewers read them (the server enforces it anyway).
import {
  badge,
  button,
  checkField,
  confirmAction,
  errorBox,
  field,
  fmtDate,
  fmtNumber,
  form,
  isAdmin,
  newId,
  rawFetch,
  selectField,
  table,
  tabset,
  textField,
  unavailable,
  usePageStyles,
} from "../lib/ui.js";

const MASK = "**********";

// The channel blocks of TenantSettings (models/tenant.py) and their fields.
const CHANNELS = [
  {
    id: "waha",
    label: "WhatsApp (WAHA)",
    fields: [
      { name: "base_url", label: "Base URL", type: "url", default: "http://localhost:3000" },
      { name: "api_key", label: "API key", secret: true },
      { name: "session", label: "Session", default: "default" },
      { name: "webhook_secret", label: "Webhook secret (HMAC)", secret: true },
    ],
  },
  {
    id: "whatsapp",
    label: "WhatsApp (Meta Cloud API)",
    fields: [
      { name: "graph_url", label: "Graph URL", type: "url", default: "https://graph.facebook.com/v21.0" },
      { name: "phone_number_id", label: "Phone number id" },
      { name: "access_token", label: "Access token", secret: true },
      { name: "app_secret", label: "App secret", secret: true },
      { name: "verify_token", label: "Verify token", secret: true },
    ],
  },
  {
    id: "messenger",
    label: "Messenger",
    fields: [
      { name: "graph_url", label: "Graph URL", type: "url", default: "https://graph.facebook.com/v21.0" },
      { name: "page_access_token", label: "Page access token", secret: true },
      { name: "app_secret", label: "App secret", secret: true },
      { name: "verify_token", label: "Verify token", secret: true },
    ],
  },
  {
    id: "chatwoot",
    label: "Chatwoot",
    fields: [
      { name: "base_url", label: "Base URL", type: "url", default: "http://localhost:3001" },
      { name: "account_id", label: "Account id", type: "number", default: 1 },
      { name: "api_token", label: "API token", secret: true },
      { name: "webhook_secret", label: "Webhook secret", secret: true },
    ],
  },
  {
    id: "smtp",
    label: "E-mail out (SMTP)",
    fields: [
      { name: "host", label: "Host", default: "localhost" },
      { name: "port", label: "Port", type: "number", default: 25 },
      { name: "from_address", label: "From address", type: "email", default: "leadflow@localhost" },
      { name: "username", label: "Username" },
      { name: "password", label: "Password", secret: true },
      { name: "starttls", label: "STARTTLS", type: "checkbox" },
      { name: "use_tls", label: "TLS from the start", type: "checkbox" },
    ],
  },
  {
    id: "imap",
    label: "E-mail in (IMAP)",
    fields: [
      { name: "host", label: "Host", default: "localhost" },
      { name: "port", label: "Port", type: "number", default: 993 },
      { name: "username", label: "Username" },
      { name: "password", label: "Password", secret: true },
      { name: "mailbox", label: "Mailbox", default: "INBOX" },
      { name: "poll_seconds", label: "Poll every (seconds)", type: "number" },
      { name: "use_tls", label: "IMAPS (TLS)", type: "checkbox", default: true },
      { name: "enabled", label: "Reading enabled", type: "checkbox", default: true },
    ],
  },
];

// The credentials each CRM kind logs in with (models/crm.py REQUIRED_CREDENTIALS: the server
// checks them and answers 422 naming what is missing; this only offers the right inputs).
const CRM_CREDENTIALS = {
  builtin: [],
  hubspot: ["access_token"],
  salesforce: ["client_id", "client_secret"],
  pipedrive: ["api_token", "access_token"],
  chatwoot: ["api_token", "account_id"],
  gohighlevel: ["private_integration_token", "access_token", "location_id"],
};

const listOf = (payload, key) => (Array.isArray(payload) ? payload : (payload && payload[key]) || []);

/** Put each problem with a `loc` beside the input whose data-loc matches it; the others go to
 * the error box. Returns true when every problem found its input. */
function markProblems(ctx, container, err, box, prefix) {
  for (const old of container.querySelectorAll(".lf-field-error")) old.remove();
  for (const old of container.querySelectorAll("[aria-invalid=true]")) old.removeAttribute("aria-invalid");
  const problems = Array.isArray(err && err.detail) ? err.detail : [];
  const left = [];
  let first = null;
  for (const p of problems) {
    const loc = p && (p.loc || (p.field ? String(p.field).split(".") : null));
    const key = loc ? loc.filter((x) => x !== "body").join(".") : null;
    const input = key ? container.querySelector(`[data-loc="${CSS.escape(key)}"]`) : null;
    if (!input) {
      left.push(p);
      continue;
    }
    input.setAttribute("aria-invalid", "true");
    const msgId = newId("err");
    const msg = ctx.el("small", { class: "lf-field-error", id: msgId }, p.msg || p.problem || String(p));
    input.setAttribute("aria-describedby", msgId);
    input.closest(".field").append(msg);
    first = first || input;
  }
  box.show({ ...err, detail: left.length ? left : null }, prefix);
  if (first) first.focus();
}

function secretState(ctx, isSet) {
  return ctx.el("span", { class: `lf-secret-state ${isSet ? "set" : "unset"}` }, isSet ? "set" : "not set");
}

function readOnlyNote(ctx) {
  return ctx.el("p", { class: "muted lf-readonly" }, "Only admins can change these settings.");
}

export async function render(root, ctx) {
  usePageStyles();
  const admin = isAdmin(ctx);
  const tabs = [
    { id: "channels", label: "Channels", render: channelsTab },
    { id: "specialists", label: "Specialists", render: specialistsTab },
    { id: "hours", label: "Quiet hours & time zone", render: hoursTab },
    { id: "playbook", label: "Playbook", render: playbookTab },
    { id: "crm", label: "CRM integrations", render: crmTab },
    { id: "knowledge", label: "Knowledge & inventory", render: knowledgeTab },
    ...(admin
      ? [
          { id: "keys", label: "API keys", render: keysTab },
          { id: "users", label: "Users", render: usersTab },
        ]
      : []),
  ];
  const set = tabset(ctx, tabs, {
    onChange(id) {
      // The tab is part of the address, so a reload (or a shared link) opens it again.
      if (ctx.setQuery) ctx.setQuery(new URLSearchParams({ tab: id }));
    },
  });
  root.replaceChildren(
    ctx.el(
      "div",
      { class: "lf-page lf-settings-page" },
      ctx.el("header", { class: "lf-page-head" }, ctx.el("h1", {}, "Settings")),
      admin ? "" : readOnlyNote(ctx),
      set.node,
    ),
  );

  // ---- shared loaders ------------------------------------------------------------------------

  async function loadSettings() {
    return ctx.api("GET", "/api/v1/settings");
  }

  async function patchSettings(patch) {
    return ctx.api("PATCH", "/api/v1/settings", patch);
  }

  // ---- channels ------------------------------------------------------------------------------

  async function channelsTab(panel) {
    let settings;
    let status = {};
    try {
      settings = await loadSettings();
      status = (await ctx.api("GET", "/api/v1/settings/status").catch(() => ({}))).channels || {};
    } catch (err) {
      panel.replaceChildren(unavailable(ctx, err, "Settings"));
      return;
    }
    panel.replaceChildren(
      ctx.el("h2", {}, "Channels"),
      ...CHANNELS.map((channel) => channelCard(channel, settings[channel.id], status[channel.id])),
    );
  }

  function channelCard(channel, block, report) {
    const present = block !== undefined && block !== null;
    const errors = errorBox(ctx);
    const testResult = ctx.el("p", { class: "lf-test-result", "aria-live": "polite", id: `channel-${channel.id}-test-result` });
    const inputs = [];
    const nodes = channel.fields.map((f) => {
      const loc = `${channel.id}.${f.name}`;
      const value = present ? block[f.name] : undefined;
      if (f.type === "checkbox") {
        const c = checkField(ctx, f.label, present ? Boolean(value) : Boolean(f.default));
        c.input.dataset.loc = loc;
        inputs.push([f, c.input]);
        return c.node;
      }
      if (f.secret) {
        const isSet = value === MASK || (typeof value === "string" && value.length > 0);
        const t = textField(ctx, f.label, { type: "password", autocomplete: "new-password", placeholder: isSet && admin ? "unchanged" : null });
        t.input.value = "";
        t.input.dataset.loc = loc;
        t.input.id = `channel-${channel.id}-${f.name}`;
        t.node.querySelector("label").append(" ", secretState(ctx, isSet));
        inputs.push([f, t.input]);
        return t.node;
      }
      const t = textField(ctx, f.label, {
        type: f.type === "number" ? "number" : f.type === "email" ? "email" : "text",
        value: value ?? "",
        placeholder: f.default !== undefined ? `default: ${f.default}` : null,
      });
      t.input.dataset.loc = loc;
      t.input.id = `channel-${channel.id}-${f.name}`;
      inputs.push([f, t.input]);
      return t.node;
    });
    if (!admin) for (const [, input] of inputs) input.disabled = true;

    async function save() {
      errors.clear();
      const patch = {};
      for (const [f, input] of inputs) {
        if (f.type === "checkbox") patch[f.name] = input.checked;
        else if (f.secret) {
          if (input.value !== "") patch[f.name] = input.value; // empty: keep the stored one
        } else if (input.value.trim() === "") {
          // Empty: back to the default (null removes the stored value); a new block just
          // leaves it out, as null is no value of a field that has a default.
          if (present) patch[f.name] = null;
        } else patch[f.name] = f.type === "number" ? Number(input.value) : input.value.trim();
      }
      try {
        await patchSettings({ [channel.id]: patch });
        ctx.toast && ctx.toast(`${channel.label} saved`);
        await set.refresh("channels");
      } catch (err) {
        markProblems(ctx, card, err, errors, `${channel.label} not saved`);
      }
    }

    async function test() {
      testResult.textContent = "Testing…";
      testResult.className = "lf-test-result";
      try {
        const result = await ctx.api("POST", `/api/v1/settings/channels/${encodeURIComponent(channel.id)}/test`);
        testResult.textContent = `${result.ok ? "Connection works" : "Connection failed"}: ${result.detail || ""}`;
        testResult.className = `lf-test-result ${result.ok ? "ok" : "failed"}`;
      } catch (err) {
        testResult.textContent =
          err && (err.status === 404 || err.status === 405)
            ? `The connection test is not available on this server (${err.status}).`
            : `Test not run: ${err.title || err}${typeof err.detail === "string" ? ` — ${err.detail}` : ""}`;
        testResult.className = "lf-test-result failed";
      }
    }

    async function disconnect() {
      if (!confirmAction(`Disconnect ${channel.label}? Its settings and secrets are removed.`)) return;
      try {
        await patchSettings({ [channel.id]: null });
        await set.refresh("channels");
      } catch (err) {
        errors.show(err, `${channel.label} not disconnected`);
      }
    }

    const state = !present
      ? badge(ctx, "not connected", "off")
      : report && report.configured === false
        ? badge(ctx, `incomplete: ${(report.missing || []).join(", ")} missing`, "warn")
        : badge(ctx, "configured", "ok");
    const actions = [];
    if (admin) actions.push(ctx.el("button", { type: "submit", class: "primary", id: `channel-${channel.id}-save` }, present ? "Save" : "Connect"));
    if (present) {
      const t = button(ctx, "Test connection", test, { label: `Test the ${channel.label} connection` });
      t.id = `channel-${channel.id}-test`;
      if (admin) actions.push(t);
      if (admin) actions.push(button(ctx, "Disconnect", disconnect, { kind: "danger", label: `Disconnect ${channel.label}` }));
    }
    const card = ctx.el(
      "details",
      { class: "card lf-channel", id: `channel-${channel.id}` },
      ctx.el("summary", {}, ctx.el("span", { class: "lf-summary-title" }, channel.label), " ", state),
      form(ctx, { class: "lf-form" }, save, ctx.el("div", { class: "lf-grid" }, ...nodes), errors.node, ctx.el("div", { class: "lf-actions" }, ...actions), testResult),
    );
    card.open = present;
    return card;
  }

  // ---- specialists ---------------------------------------------------------------------------

  async function specialistsTab(panel) {
    let settings;
    try {
      settings = await loadSettings();
    } catch (err) {
      panel.replaceChildren(unavailable(ctx, err, "Settings"));
      return;
    }
    const errors = errorBox(ctx);
    const rows = ctx.el("div", { class: "lf-rows", id: "specialists-rows" });
    const FIELDS = [
      ["name", "Name", "text"],
      ["role", "Role", "text"],
      ["whatsapp", "WhatsApp (phone or chat id)", "text"],
      ["email", "E-mail", "email"],
      ["chatwoot_agent_id", "Chatwoot agent id", "number"],
    ];
    function addRow(person = {}) {
      const row = ctx.el("fieldset", { class: "lf-fieldset lf-specialist" });
      const legend = ctx.el("legend", {}, person.name || "New specialist");
      row.append(legend);
      for (const [name, label, type] of FIELDS) {
        const t = textField(ctx, label, { type, value: person[name] ?? "" });
        t.input.dataset.name = name;
        t.input.disabled = !admin;
        row.append(t.node);
      }
      if (admin) row.append(button(ctx, "Remove", () => { row.remove(); renumber(); }, { kind: "secondary", label: `Remove specialist ${person.name || ""}`.trim() }));
      rows.append(row);
      renumber();
    }
    function renumber() {
      [...rows.children].forEach((row, i) => {
        for (const input of row.querySelectorAll("input")) input.dataset.loc = `specialists.${i}.${input.dataset.name}`;
      });
    }
    (settings.specialists || []).forEach((p) => addRow(p));
    async function save() {
      errors.clear();
      const people = [...rows.children].map((row) => {
        const person = {};
        for (const input of row.querySelectorAll("input")) {
          const v = input.value.trim();
          if (v === "") continue;
          person[input.dataset.name] = input.type === "number" ? Number(v) : v;
        }
        return person;
      });
      try {
        await patchSettings({ specialists: people });
        ctx.toast && ctx.toast("Specialists saved");
        await set.refresh("specialists");
      } catch (err) {
        markProblems(ctx, panel, err, errors, "Specialists not saved");
      }
    }
    panel.replaceChildren(
      ctx.el("h2", {}, "Specialists"),
      ctx.el("p", { class: "muted" }, "The people an escalation notifies; their role is matched against the playbook's escalation rules."),
      form(
        ctx,
        { class: "lf-form", id: "specialists-form" },
        save,
        rows,
        errors.node,
        admin
          ? ctx.el(
              "div",
              { class: "lf-actions" },
              button(ctx, "Add specialist", () => addRow(), { kind: "secondary" }),
              ctx.el("button", { type: "submit", class: "primary", id: "specialists-save" }, "Save specialists"),
            )
          : "",
      ),
    );
  }

  // ---- quiet hours and time zone -------------------------------------------------------------

  async function hoursTab(panel) {
    let settings;
    let playbook = null;
    let playbookError = null;
    try {
      settings = await loadSettings();
    } catch (err) {
      panel.replaceChildren(unavailable(ctx, err, "Settings"));
      return;
    }
    try {
      playbook = await ctx.api("GET", "/api/v1/settings/playbook");
    } catch (err) {
      playbookError = err;
    }
    const errors = errorBox(ctx);
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    const zoneList = ctx.el("datalist", { id: "lf-timezones" }, ...["UTC", ...zones].map((z) => ctx.el("option", { value: z })));
    const zone = textField(ctx, "Time zone", { id: "settings-timezone", list: "lf-timezones", value: settings.timezone || "UTC", hint: "IANA name, e.g. Europe/Amsterdam: the dashboard's days and the default send window follow it." });
    zone.input.dataset.loc = "timezone";
    zone.input.disabled = !admin;
    const quiet = playbook ? readQuietHours(playbook.yaml) : null;
    const start = textField(ctx, "Quiet from", { type: "time", id: "quiet-start", value: quiet ? quiet.start : "" });
    const end = textField(ctx, "Quiet until", { type: "time", id: "quiet-end", value: quiet ? quiet.end : "" });
    const quietZone = textField(ctx, "Time zone of the quiet hours", { id: "quiet-timezone", list: "lf-timezones", value: quiet ? quiet.timezone : "" });
    for (const t of [start, end, quietZone]) t.input.disabled = !admin || !playbook;

    async function save() {
      errors.clear();
      try {
        const newZone = zone.input.value.trim() || "UTC";
        if (newZone !== settings.timezone) await patchSettings({ timezone: newZone });
        if (playbook) {
          const wanted = start.input.value && end.input.value ? { start: start.input.value, end: end.input.value, timezone: quietZone.input.value.trim() || newZone } : null;
          const yaml = writeQuietHours(playbook.yaml, wanted);
          if (yaml !== playbook.yaml) await putPlaybook(yaml);
        }
        ctx.toast && ctx.toast("Quiet hours and time zone saved");
        await set.refresh("hours");
      } catch (err) {
        markProblems(ctx, panel, err, errors, "Not saved");
      }
    }
    panel.replaceChildren(
      ctx.el("h2", {}, "Quiet hours & time zone"),
      form(
        ctx,
        { class: "lf-form", id: "hours-form" },
        save,
        zoneList,
        zone.node,
        ctx.el(
          "fieldset",
          { class: "lf-fieldset" },
          ctx.el("legend", {}, "Quiet hours (no follow-ups, no campaign messages)"),
          playbookError
            ? unavailable(ctx, playbookError, "The playbook")
            : ctx.el(
                "p",
                { class: "muted" },
                (quiet ? "Kept in the playbook (quiet_hours)." : "None set: the playbook sends at any hour. Set both times to add them.") +
                  (playbook && playbook.source !== "custom" ? " Saving them stores the tenant's own copy of the playbook in use." : ""),
              ),
          ctx.el("div", { class: "lf-row" }, start.node, end.node, quietZone.node),
        ),
        errors.node,
        admin ? ctx.el("div", { class: "lf-actions" }, ctx.el("button", { type: "submit", class: "primary", id: "hours-save" }, "Save")) : "",
      ),
    );
  }

  // ---- playbook ------------------------------------------------------------------------------

  async function putPlaybook(yaml) {
    // The body is the YAML itself (application/yaml), not JSON: hence not ctx.api.
    const response = await rawFetch(ctx, "PUT", "/api/v1/settings/playbook", {
      body: yaml,
      headers: { "Content-Type": "application/yaml" },
    });
    return response.json();
  }

  async function playbookTab(panel) {
    let playbook;
    try {
      playbook = await ctx.api("GET", "/api/v1/settings/playbook");
    } catch (err) {
      panel.replaceChildren(ctx.el("h2", {}, "Playbook"), unavailable(ctx, err, "The playbook editor"));
      return;
    }
    const errors = errorBox(ctx);
    const editor = ctx.el("textarea", { id: "playbook-yaml", rows: "24", spellcheck: "false", class: "lf-code" });
    editor.value = playbook.yaml || "";
    editor.readOnly = !admin;
    const where = ctx.el("ol", { class: "lf-problems", id: "playbook-problems", "aria-live": "polite" });
    const messages = ctx.el("textarea", { id: "preview-messages", rows: "4" });
    messages.value = "Hi, what does it cost?\nCan I come by tomorrow?";
    const preview = ctx.el("div", { id: "playbook-preview", "aria-live": "polite" });

    function showProblems(err) {
      where.replaceChildren();
      const problems = Array.isArray(err.detail) ? err.detail : err.detail ? [err.detail] : [];
      for (const p of problems) {
        const line = lineOf(p);
        const text = typeof p === "string" ? p : p.msg || p.message || p.problem || JSON.stringify(p);
        const says = /\bline \d+/.test(text);
        const item = ctx.el("li", {}, line && !says ? `line ${line}${p.column ? `, column ${p.column}` : ""}: ${text}` : text);
        if (line) {
          const go = button(ctx, "Go to line", () => goToLine(editor, line), { kind: "secondary small", label: `Go to line ${line}` });
          item.append(" ", go);
        }
        where.append(item);
      }
      errors.show({ title: err.title, status: err.status, detail: null }, "Playbook not valid");
      const first = problems.map(lineOf).find(Boolean);
      if (first) goToLine(editor, first);
    }

    async function save() {
      errors.clear();
      where.replaceChildren();
      try {
        await putPlaybook(editor.value);
        ctx.toast && ctx.toast("Playbook saved");
        await set.refresh("playbook");
      } catch (err) {
        if (err && err.status === 422) showProblems(err);
        else errors.show(err, "Playbook not saved");
      }
    }

    async function runPreview() {
      errors.clear();
      where.replaceChildren();
      preview.replaceChildren(ctx.el("p", { class: "muted" }, "Asking the offline provider…"));
      const lines = messages.value.split("\n").map((l) => l.trim()).filter(Boolean);
      try {
        const result = await ctx.api("POST", "/api/v1/settings/playbook/preview", { yaml: editor.value, messages: lines });
        const turns = result.turns || [];
        preview.replaceChildren(
          ctx.el(
            "ol",
            { class: "lf-preview" },
            ...turns.map((t) => {
              const notes = [
                `stage ${String(t.stage || "").replaceAll("_", " ")}`,
                t.intent ? `intent ${t.intent}` : "",
                t.escalation ? `escalates: ${t.escalation.rule} (${t.escalation.reason}), notifies ${t.escalation.notify.join(", ") || "nobody"}` : "",
                t.blocked ? `the reply guard would stop it: ${t.blocked}` : "",
                t.note || "",
              ].filter(Boolean);
              return ctx.el(
                "li",
                {},
                ctx.el("p", { class: "lf-said lead" }, ctx.el("strong", {}, "Lead: "), t.message),
                ctx.el(
                  "p",
                  { class: "lf-said ai" },
                  ctx.el("strong", {}, "Offline reply: "),
                  t.reply === null || t.reply === undefined ? "(no reply: the AI stays silent)" : t.reply,
                ),
                ctx.el("small", { class: "muted" }, notes.join(" · ")),
              );
            }),
          ),
        );
      } catch (err) {
        preview.replaceChildren();
        if (err && err.status === 422) showProblems(err);
        else if (err && (err.status === 404 || err.status === 405)) preview.replaceChildren(unavailable(ctx, err, "The preview"));
        else errors.show(err, "No preview");
      }
    }

    const previewButton = button(ctx, "Preview offline replies", runPreview, { kind: "secondary" });
    previewButton.id = "playbook-preview-run";
    panel.replaceChildren(
      ctx.el("h2", {}, "Playbook"),
      ctx.el(
        "p",
        { class: "muted", id: "playbook-source" },
        `${playbook.source === "custom" ? "The tenant's own playbook" : playbook.source === "builtin" ? `The built-in playbook "${playbook.builtin}"` : "The neutral persona (no playbook chosen)"}` +
          ` · version ${String(playbook.hash || "").slice(0, 12)}. YAML: persona, rules, escalation, scoring, follow-ups, quiet hours, offline texts; checked before it is saved.`,
      ),
      form(
        ctx,
        { class: "lf-form", id: "playbook-form" },
        save,
        field(ctx, "Playbook (YAML)", editor).node,
        errors.node,
        where,
        admin ? ctx.el("div", { class: "lf-actions" }, ctx.el("button", { type: "submit", class: "primary", id: "playbook-save" }, "Save playbook")) : "",
      ),
      ctx.el(
        "section",
        { class: "card", "aria-labelledby": "preview-heading" },
        ctx.el("h3", { id: "preview-heading" }, "Preview"),
        field(ctx, "Lead messages, one per line", messages).node,
        ctx.el("div", { class: "lf-actions" }, previewButton),
        preview,
      ),
    );
  }

  // ---- CRM integrations ----------------------------------------------------------------------

  async function crmTab(panel) {
    let integrations;
    try {
      integrations = listOf(await ctx.api("GET", "/api/v1/integrations"), "integrations");
    } catch (err) {
      panel.replaceChildren(ctx.el("h2", {}, "CRM integrations"), unavailable(ctx, err, "CRM integrations"));
      return;
    }
    panel.replaceChildren(
      ctx.el("h2", {}, "CRM integrations"),
      ...(integrations.length ? integrations.map(integrationCard) : [ctx.el("p", { class: "muted", id: "crm-empty" }, "No CRM connected: leads stay in leadflow's own table.")]),
      admin ? addIntegration() : "",
    );
  }

  function mappingEditor(mapping, disabled) {
    const rows = ctx.el("tbody", {});
    function addRow(from = "", to = "") {
      const a = ctx.el("input", { type: "text", value: from, class: "lf-map-from" });
      a.value = from;
      a.setAttribute("aria-label", "leadflow field");
      const b = ctx.el("input", { type: "text", value: to, class: "lf-map-to" });
      b.value = to;
      b.setAttribute("aria-label", `CRM property for ${from || "the new field"}`);
      a.disabled = b.disabled = disabled;
      const remove = disabled ? "" : button(ctx, "Remove", () => tr.remove(), { kind: "secondary small", label: `Remove mapping of ${from || "this row"}` });
      const tr = ctx.el("tr", {}, ctx.el("td", {}, a), ctx.el("td", {}, b), ctx.el("td", {}, remove));
      rows.append(tr);
    }
    for (const [from, to] of Object.entries(mapping || {})) addRow(from, to);
    const node = ctx.el(
      "div",
      { class: "lf-mapping" },
      ctx.el("div", { class: "table-wrap" }, ctx.el("table", { class: "table" }, ctx.el("caption", {}, "Field mapping"), ctx.el("thead", {}, ctx.el("tr", {}, ctx.el("th", { scope: "col" }, "leadflow field"), ctx.el("th", { scope: "col" }, "CRM property"), ctx.el("th", { scope: "col" }, ""))), rows)),
      disabled ? "" : button(ctx, "Add mapping row", () => addRow(), { kind: "secondary small" }),
    );
    return {
      node,
      value() {
        const out = {};
        for (const tr of rows.children) {
          const from = tr.querySelector(".lf-map-from").value.trim();
          const to = tr.querySelector(".lf-map-to").value.trim();
          if (from) out[from] = to;
        }
        return out;
      },
    };
  }

  function integrationCard(integ) {
    const errors = errorBox(ctx);
    const result = ctx.el("p", { class: "lf-test-result", "aria-live": "polite" });
    const name = textField(ctx, "Name", { value: integ.name });
    name.input.dataset.loc = "name";
    const base = textField(ctx, "Base URL", { value: integ.base_url || "" });
    base.input.dataset.loc = "base_url";
    name.input.disabled = base.input.disabled = !admin;
    const mapping = mappingEditor(integ.field_mapping, !admin);
    const creds = (CRM_CREDENTIALS[integ.kind] || []).map((c) => {
      const t = textField(ctx, c.replaceAll("_", " "), { type: "password", autocomplete: "new-password" });
      t.input.value = "";
      t.input.dataset.loc = `credentials.${c}`;
      t.input.dataset.credential = c;
      t.input.disabled = !admin;
      t.node.querySelector("label").append(" ", secretState(ctx, (integ.credentials_set || []).includes(c)));
      return t;
    });
    const id = integ.id;
    const path = `/api/v1/integrations/${encodeURIComponent(id)}`;

    async function save() {
      errors.clear();
      const patch = { name: name.input.value.trim(), field_mapping: mapping.value() };
      const base_url = base.input.value.trim();
      if (base_url && base_url !== integ.base_url) patch.base_url = base_url;
      const credentials = {};
      for (const c of creds) if (c.input.value !== "") credentials[c.input.dataset.credential] = c.input.value;
      if (Object.keys(credentials).length) patch.credentials = credentials; // empty: keep the stored ones
      try {
        await ctx.api("PATCH", path, patch);
        ctx.toast && ctx.toast(`${integ.name} saved`);
        await set.refresh("crm");
      } catch (err) {
        markProblems(ctx, card, err, errors, `${integ.name} not saved`);
      }
    }
    async function test() {
      result.textContent = "Testing…";
      try {
        const r = await ctx.api("POST", `${path}/test`);
        result.textContent = `${r.ok ? "Connection works" : "Connection failed"}: ${r.detail || ""}`;
        result.className = `lf-test-result ${r.ok ? "ok" : "failed"}`;
      } catch (err) {
        result.textContent = `Test not run: ${err.title || err}${typeof err.detail === "string" ? ` — ${err.detail}` : ""}`;
        result.className = "lf-test-result failed";
      }
    }
    async function toggle() {
      errors.clear();
      try {
        await ctx.api("PATCH", path, { enabled: !integ.enabled });
        await set.refresh("crm");
      } catch (err) {
        errors.show(err, `${integ.name} not ${integ.enabled ? "disabled" : "enabled"}`);
      }
    }
    async function remove() {
      if (!confirmAction(`Delete the ${integ.kind} integration ${integ.name}? Leads stop syncing to it.`)) return;
      try {
        await ctx.api("DELETE", path);
        ctx.toast && ctx.toast(`${integ.name} deleted`);
        await set.refresh("crm");
      } catch (err) {
        errors.show(err, `${integ.name} not deleted`);
      }
    }
    const actions = [];
    if (admin) {
      actions.push(ctx.el("button", { type: "submit", class: "primary", "data-action": "save" }, "Save"));
      const t = button(ctx, "Test connection", test, { label: `Test ${integ.name}` });
      t.dataset.action = "test";
      const d = button(ctx, integ.enabled ? "Disable" : "Enable", toggle, { label: `${integ.enabled ? "Disable" : "Enable"} ${integ.name}` });
      d.dataset.action = "toggle";
      const x = button(ctx, "Delete", remove, { kind: "danger", label: `Delete ${integ.name}` });
      x.dataset.action = "delete";
      actions.push(t, d, x);
    }
    const card = ctx.el(
      "article",
      { class: "card lf-integration", "data-integration": integ.name },
      ctx.el("h3", {}, `${integ.name} `, badge(ctx, integ.kind, "kind"), " ", badge(ctx, integ.enabled ? "enabled" : "disabled", integ.enabled ? "ok" : "off")),
      ctx.el("p", { class: "muted" }, `${integ.mode === "best_effort" ? "best effort" : "saga"} · position ${integ.order} · added ${fmtDate(integ.created_at)}`),
      form(ctx, { class: "lf-form" }, save, ctx.el("div", { class: "lf-grid" }, name.node, base.node, ...creds.map((c) => c.node)), mapping.node, errors.node, ctx.el("div", { class: "lf-actions" }, ...actions), result),
    );
    return card;
  }

  function addIntegration() {
    const errors = errorBox(ctx);
    const kind = selectField(ctx, "Kind", Object.keys(CRM_CREDENTIALS), { value: "hubspot" });
    kind.input.id = "crm-new-kind";
    kind.input.dataset.loc = "kind";
    const name = textField(ctx, "Name", { id: "crm-new-name", maxlength: "128" });
    name.input.dataset.loc = "name";
    const base = textField(ctx, "Base URL (empty: the vendor's)", { id: "crm-new-base-url" });
    base.input.dataset.loc = "base_url";
    const mode = selectField(ctx, "Mode", [["saga", "saga (all or none)"], ["best_effort", "best effort"]]);
    const credsBox = ctx.el("div", { class: "lf-grid", id: "crm-new-credentials" });
    function credentialInputs() {
      credsBox.replaceChildren(
        ...(CRM_CREDENTIALS[kind.input.value] || []).map((c) => {
          const t = textField(ctx, c.replaceAll("_", " "), { type: "password", autocomplete: "new-password", id: `crm-new-${c}` });
          t.input.dataset.loc = `credentials.${c}`;
          t.input.dataset.credential = c;
          return t.node;
        }),
      );
    }
    kind.input.addEventListener("change", credentialInputs);
    credentialInputs();
    async function submit() {
      errors.clear();
      const body = { kind: kind.input.value, name: name.input.value.trim(), mode: mode.input.value };
      if (base.input.value.trim()) body.base_url = base.input.value.trim();
      const credentials = {};
      for (const input of credsBox.querySelectorAll("input")) if (input.value !== "") credentials[input.dataset.credential] = input.value;
      body.credentials = credentials;
      try {
        await ctx.api("POST", "/api/v1/integrations", body);
        ctx.toast && ctx.toast(`${body.name} added`);
        await set.refresh("crm");
      } catch (err) {
        markProblems(ctx, section, err, errors, "Integration not added");
      }
    }
    const section = ctx.el(
      "section",
      { class: "card", "aria-labelledby": "crm-new-heading" },
      ctx.el("h3", { id: "crm-new-heading" }, "Add a CRM"),
      form(
        ctx,
        { class: "lf-form", id: "crm-new-form" },
        submit,
        ctx.el("div", { class: "lf-grid" }, kind.node, name.node, base.node, mode.node),
        credsBox,
        ctx.el("p", { class: "muted" }, "The field mapping starts as the kind's default; edit it once added."),
        errors.node,
        ctx.el("div", { class: "lf-actions" }, ctx.el("button", { type: "submit", class: "primary", id: "crm-new-add" }, "Add integration")),
      ),
    );
    return section;
  }

  // ---- knowledge and inventory sources -------------------------------------------------------

  async function knowledgeTab(panel) {
    const docs = ctx.el("section", { class: "card", "aria-labelledby": "knowledge-heading" });
    const sources = ctx.el("section", { class: "card", "aria-labelledby": "sources-heading" });
    panel.replaceChildren(ctx.el("h2", {}, "Knowledge & inventory"), docs, sources);
    await Promise.all([documentsSection(docs), sourcesSection(sources)]);
  }

  async function documentsSection(section) {
    const heading = ctx.el("h3", { id: "knowledge-heading" }, "Knowledge documents");
    let documents;
    try {
      documents = listOf(await ctx.api("GET", "/api/v1/knowledge"), "documents");
    } catch (err) {
      section.replaceChildren(heading, unavailable(ctx, err, "Knowledge documents"));
      return;
    }
    const errors = errorBox(ctx);
    const rows = documents.map((d) => [
      d.title,
      fmtNumber(d.chars),
      fmtDate(d.created_at),
      admin
        ? button(
            ctx,
            "Delete",
            async () => {
              if (!confirmAction(`Delete the document "${d.title}"?`)) return;
              try {
                await ctx.api("DELETE", `/api/v1/knowledge/${encodeURIComponent(d.id)}`);
                await documentsSection(section);
              } catch (err) {
                errors.show(err, "Not deleted");
              }
            },
            { kind: "danger small", label: `Delete document ${d.title}` },
          )
        : "",
    ]);
    const title = textField(ctx, "Title", { id: "knowledge-title", maxlength: "300" });
    title.input.dataset.loc = "title";
    const body = ctx.el("textarea", { id: "knowledge-body", rows: "5" });
    body.dataset.loc = "body";
    async function add() {
      errors.clear();
      try {
        await ctx.api("POST", "/api/v1/knowledge", { title: title.input.value.trim(), body: body.value });
        await documentsSection(section);
      } catch (err) {
        markProblems(ctx, section, err, errors, "Document not added");
      }
    }
    section.replaceChildren(
      heading,
      documents.length ? table(ctx, ["Title", "Characters", "Added", ""], rows) : ctx.el("p", { class: "muted" }, "No documents yet."),
      errors.node,
      admin
        ? form(
            ctx,
            { class: "lf-form", id: "knowledge-form" },
            add,
            title.node,
            field(ctx, "Text", body).node,
            ctx.el("div", { class: "lf-actions" }, ctx.el("button", { type: "submit", class: "primary" }, "Add document")),
          )
        : "",
    );
  }

  async function sourcesSection(section) {
    const heading = ctx.el("h3", { id: "sources-heading" }, "Inventory sources");
    let sources;
    try {
      sources = listOf(await ctx.api("GET", "/api/v1/inventory/sources"), "sources");
    } catch (err) {
      section.replaceChildren(heading, unavailable(ctx, err, "Inventory sources"));
      return;
    }
    const errors = errorBox(ctx);
    const act = (s, text, fn, kind = "secondary small") =>
      button(
        ctx,
        text,
        async () => {
          errors.clear();
          try {
            await fn();
            await sourcesSection(section);
          } catch (err) {
            errors.show(err, `${s.name}: not done`);
          }
        },
        { kind, label: `${text} ${s.name}` },
      );
    const rows = sources.map((s) => [
      s.name,
      s.spec.kind.replace("_", " "),
      s.spec.url,
      `${fmtNumber(s.every_minutes)} min${s.spec.paused ? " (paused)" : ""}`,
      fmtNumber(s.items),
      s.last_error ? `error: ${s.last_error}` : s.last_run_at ? fmtDate(s.last_run_at) : "never",
      admin
        ? ctx.el(
            "div",
            { class: "lf-actions" },
            act(s, "Run now", () => ctx.api("POST", `/api/v1/inventory/sources/${encodeURIComponent(s.id)}/run`)),
            act(s, s.spec.paused ? "Resume" : "Pause", () => ctx.api("PATCH", `/api/v1/inventory/sources/${encodeURIComponent(s.id)}`, { paused: !s.spec.paused, note: "from the console" })),
            act(
              s,
              "Delete",
              async () => {
                if (confirmAction(`Delete the source ${s.name}? Its items stop being offered.`)) await ctx.api("DELETE", `/api/v1/inventory/sources/${encodeURIComponent(s.id)}`);
              },
              "danger small",
            ),
          )
        : "",
    ]);
    const name = textField(ctx, "Name", { id: "source-name", maxlength: "120" });
    name.input.dataset.loc = "name";
    const kind = selectField(ctx, "Kind", [["listing_page", "listing page (HTML)"], ["json_feed", "JSON feed"], ["csv_feed", "CSV feed"]]);
    kind.input.dataset.loc = "kind";
    const url = textField(ctx, "URL", { id: "source-url", type: "url" });
    url.input.dataset.loc = "url";
    const every = textField(ctx, "Every (minutes)", { id: "source-every", type: "number", min: "1", placeholder: "default" });
    every.input.dataset.loc = "every_minutes";
    async function add() {
      errors.clear();
      const body = { name: name.input.value.trim(), kind: kind.input.value, url: url.input.value.trim() };
      if (every.input.value) body.every_minutes = Number(every.input.value);
      try {
        await ctx.api("POST", "/api/v1/inventory/sources", body);
        await sourcesSection(section);
      } catch (err) {
        markProblems(ctx, section, err, errors, "Source not added");
      }
    }
    section.replaceChildren(
      heading,
      sources.length ? table(ctx, ["Name", "Kind", "URL", "Every", "Items", "Last run", ""], rows) : ctx.el("p", { class: "muted" }, "No inventory sources."),
      errors.node,
      admin
        ? form(
            ctx,
            { class: "lf-form", id: "source-form" },
            add,
            ctx.el("div", { class: "lf-grid" }, name.node, kind.node, url.node, every.node),
            ctx.el("div", { class: "lf-actions" }, ctx.el("button", { type: "submit", class: "primary" }, "Add source")),
          )
        : "",
    );
  }

  // ---- API keys ------------------------------------------------------------------------------

  async function keysTab(panel) {
    let keys;
    try {
      keys = listOf(await ctx.api("GET", "/api/v1/keys"), "keys");
    } catch (err) {
      panel.replaceChildren(ctx.el("h2", {}, "API keys"), unavailable(ctx, err, "API keys"));
      return;
    }
    const errors = errorBox(ctx);
    const issued = ctx.el("div", { id: "key-issued", "aria-live": "polite" });
    const rows = keys.map((k) => [
      k.label,
      ctx.el("code", {}, `${k.prefix}…`),
      fmtDate(k.created_at),
      k.last_used_at ? fmtDate(k.last_used_at) : "never",
      k.active ? badge(ctx, "active", "ok") : badge(ctx, `revoked ${fmtDate(k.revoked_at)}`, "off"),
      k.active
        ? (() => {
            const b = button(
              ctx,
              "Revoke",
              async () => {
                if (!confirmAction(`Revoke the key "${k.label}"? Machines using it are refused from now on.`)) return;
                try {
                  await ctx.api("DELETE", `/api/v1/keys/${k.id}`);
                  ctx.toast && ctx.toast(`Key ${k.label} revoked`);
                  await set.refresh("keys");
                } catch (err) {
                  errors.show(err, "Not revoked");
                }
              },
              { kind: "danger small", label: `Revoke key ${k.label}` },
            );
            b.dataset.key = k.label;
            return b;
          })()
        : "",
    ]);
    const label = textField(ctx, "Label", { id: "key-label", maxlength: "100", placeholder: "e.g. ci" });
    label.input.dataset.loc = "label";
    async function create() {
      errors.clear();
      try {
        const made = await ctx.api("POST", "/api/v1/keys", { label: label.input.value.trim() });
        await set.refresh("keys");
        const box = panel.querySelector("#key-issued");
        const secret = ctx.el("input", { type: "text", id: "key-secret", readonly: "", class: "lf-code" });
        secret.value = made.secret;
        const copy = button(ctx, "Copy", async () => {
          secret.select();
          try {
            await navigator.clipboard.writeText(made.secret);
            ctx.toast && ctx.toast("Copied");
          } catch (_) {
            document.execCommand("copy");
          }
        }, { kind: "secondary small", label: "Copy the new key" });
        box.replaceChildren(
          ctx.el(
            "div",
            { class: "notice ok", role: "status" },
            ctx.el("p", {}, ctx.el("strong", {}, `Key "${made.key.label}" created. `), "Copy it now: it is shown this once and stored only hashed."),
            field(ctx, "The new key", secret).node,
            copy,
          ),
        );
        secret.focus();
        secret.select();
      } catch (err) {
        markProblems(ctx, panel, err, errors, "Key not created");
      }
    }
    panel.replaceChildren(
      ctx.el("h2", {}, "API keys"),
      ctx.el("p", { class: "muted" }, "For machines: a key acts as an admin of this tenant. People sign in instead."),
      issued,
      keys.length ? table(ctx, ["Label", "Key", "Created", "Last used", "State", ""], rows) : ctx.el("p", { class: "muted" }, "No keys."),
      errors.node,
      form(ctx, { class: "lf-form lf-inline", id: "key-form" }, create, label.node, ctx.el("button", { type: "submit", class: "primary", id: "key-create" }, "Create key")),
    );
  }

  // ---- users ---------------------------------------------------------------------------------

  async function usersTab(panel) {
    let users;
    try {
      users = listOf(await ctx.api("GET", "/api/v1/users"), "users");
    } catch (err) {
      panel.replaceChildren(ctx.el("h2", {}, "Users"), unavailable(ctx, err, "Users"));
      return;
    }
    const errors = errorBox(ctx);
    const ROLES = ["admin", "operator", "viewer"];
    const rows = users.map((u) => {
      const role = ctx.el("select", { "aria-label": `Role of ${u.email}`, "data-user": u.email }, ...ROLES.map((r) => ctx.el("option", { value: r }, r)));
      role.value = u.role;
      role.addEventListener("change", async () => {
        errors.clear();
        try {
          await ctx.api("PATCH", `/api/v1/users/${encodeURIComponent(u.id)}`, { role: role.value });
          ctx.toast && ctx.toast(`${u.email} is now ${role.value}`);
          await set.refresh("users");
        } catch (err) {
          role.value = u.role;
          errors.show(err, "Role not changed");
        }
      });
      const toggle = button(
        ctx,
        u.disabled ? "Enable" : "Disable",
        async () => {
          errors.clear();
          try {
            await ctx.api("PATCH", `/api/v1/users/${encodeURIComponent(u.id)}`, { disabled: !u.disabled });
            await set.refresh("users");
          } catch (err) {
            errors.show(err, `${u.email} not ${u.disabled ? "enabled" : "disabled"}`);
          }
        },
        { kind: u.disabled ? "secondary small" : "danger small", label: `${u.disabled ? "Enable" : "Disable"} ${u.email}` },
      );
      toggle.dataset.user = u.email;
      return [u.name, u.email, role, u.disabled ? badge(ctx, "disabled", "off") : badge(ctx, "active", "ok"), u.last_login_at ? fmtDate(u.last_login_at) : "never", toggle];
    });
    const email = textField(ctx, "E-mail", { id: "user-email", type: "email", autocomplete: "off" });
    email.input.dataset.loc = "email";
    const name = textField(ctx, "Name", { id: "user-name" });
    name.input.dataset.loc = "name";
    const role = selectField(ctx, "Role", ROLES, { value: "operator" });
    role.input.id = "user-role";
    role.input.dataset.loc = "role";
    const password = textField(ctx, "Password", { id: "user-password", type: "password", autocomplete: "new-password" });
    password.input.dataset.loc = "password";
    async function add() {
      errors.clear();
      try {
        await ctx.api("POST", "/api/v1/users", { email: email.input.value.trim(), name: name.input.value.trim(), role: role.input.value, password: password.input.value });
        ctx.toast && ctx.toast(`${email.input.value.trim()} added`);
        await set.refresh("users");
      } catch (err) {
        markProblems(ctx, panel, err, errors, "User not added");
      }
    }
    panel.replaceChildren(
      ctx.el("h2", {}, "Users"),
      table(ctx, ["Name", "E-mail", "Role", "State", "Last sign-in", ""], rows),
      errors.node,
      ctx.el(
        "section",
        { class: "card", "aria-labelledby": "user-new-heading" },
        ctx.el("h3", { id: "user-new-heading" }, "Add a person"),
        form(ctx, { class: "lf-form", id: "user-form" }, add, ctx.el("div", { class: "lf-grid" }, email.node, name.node, role.node, password.node), ctx.el("div", { class: "lf-actions" }, ctx.el("button", { type: "submit", class: "primary", id: "user-add" }, "Add user"))),
      ),
    );
  }

  const wanted = ctx.query && ctx.query.get("tab");
  await set.show(tabs.some((t) => t.id === wanted) ? wanted : "channels");
}

// ---- the playbook's quiet_hours block, edited as text --------------------------------------
// The playbook is YAML kept as the tenant wrote it (comments included); the quiet hours are one
// top-level block of it, so they are read and replaced as that block's lines, and the server
// validates the whole playbook as for any edit.

const QUIET_BLOCK = /^quiet_hours:.*$/m;

function blockRange(lines) {
  const start = lines.findIndex((l) => /^quiet_hours:/.test(l));
  if (start < 0) return null;
  let end = start + 1;
  while (end < lines.length && (/^\s+\S/.test(lines[end]) || lines[end].trim() === "")) end += 1;
  // Trailing blank lines belong to the gap before the next block, not to this one.
  while (end > start + 1 && lines[end - 1].trim() === "") end -= 1;
  return [start, end];
}

function unquote(v) {
  return String(v || "").trim().replace(/^["']|["']$/g, "");
}

export function readQuietHours(yaml) {
  if (!yaml || !QUIET_BLOCK.test(yaml)) return null;
  const lines = yaml.split("\n");
  const [start, end] = blockRange(lines);
  const text = lines.slice(start, end).join("\n");
  const pick = (key) => {
    const m = text.match(new RegExp(`${key}\\s*:\\s*("[^"]*"|'[^']*'|[^,}\\n#]+)`));
    return m ? unquote(m[1]) : "";
  };
  const from = pick("start");
  const until = pick("end");
  if (!from && !until) return null;
  const hhmm = (v) => (/^\d:\d\d/.test(v) ? `0${v}` : v).slice(0, 5);
  return { start: hhmm(from || "21:00"), end: hhmm(until || "08:00"), timezone: pick("timezone") || "UTC" };
}

export function writeQuietHours(yaml, quiet) {
  const lines = (yaml || "").split("\n");
  const range = blockRange(lines);
  const block = quiet ? ["quiet_hours:", `  start: "${quiet.start}"`, `  end: "${quiet.end}"`, `  timezone: ${quiet.timezone}`] : [];
  if (range) {
    lines.splice(range[0], range[1] - range[0], ...block);
    return lines.join("\n");
  }
  if (!quiet) return yaml;
  const text = (yaml || "").replace(/\s*$/, "");
  return `${text}\n\n${block.join("\n")}\n`;
}

function lineOf(problem) {
  if (problem && typeof problem === "object") {
    if (Number.isInteger(problem.line)) return problem.line;
    const text = problem.msg || problem.message || problem.problem || "";
    const m = String(text).match(/line (\d+)/);
    return m ? Number(m[1]) : null;
  }
  const m = String(problem).match(/line (\d+)/);
  return m ? Number(m[1]) : null;
}

function goToLine(textarea, line) {
  const lines = textarea.value.split("\n");
  const index = Math.max(0, Math.min(line, lines.length) - 1);
  const start = lines.slice(0, index).reduce((n, l) => n + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[index] || "").length);
  // Scroll the line into view (an estimate from the line height).
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
  textarea.scrollTop = Math.max(0, (index - 3) * lineHeight);
}
