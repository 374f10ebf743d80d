// The console's shell: the hash router, the session, the one live-update stream and the `ctx`
// every page gets (see notes/console-contract.md "The web app"). No framework, no build step.
// Pages build DOM with ctx.el (text nodes only: data never becomes markup), and the page's
// Content-Security-Policy allows no inline script or style, so nothing here uses either.

const PAGES = {
  signin: { title: 'Sign in', public: true },
  inbox: { title: 'Inbox' },
  conversation: { title: 'Conversation', nav: 'inbox' },
  leads: { title: 'Leads' },
  lead: { title: 'Lead', nav: 'leads' },
  jobs: { title: 'Jobs' },
  campaigns: { title: 'Campaigns' },
  settings: { title: 'Settings' },
  dashboard: { title: 'Dashboard' },
};

// `#/conversations/<id>` and `#/leads/<id>` carry an encoded id (conversation ids hold colons
// and `@`); the rest are plain names.
const ROUTES = [
  [/^\/signin$/, 'signin'],
  [/^\/inbox$/, 'inbox'],
  [/^\/conversations\/([^/]+)$/, 'conversation'],
  [/^\/leads$/, 'leads'],
  [/^\/leads\/([^/]+)$/, 'lead'],
  [/^\/jobs$/, 'jobs'],
  [/^\/campaigns$/, 'campaigns'],
  [/^\/settings$/, 'settings'],
  [/^\/dashboard$/, 'dashboard'],
];

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : title);
    this.name = 'ApiError';
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

const state = {
  user: null,
  csrf: null,
  cleanup: null,
  renderId: 0,
  stream: null,
  retryTimer: null,
};

const events = new EventTarget();
const $ = (id) => document.getElementById(id);

// ---- DOM ------------------------------------------------------------------------------------

const SAFE_URL = /^(#|\/(?!\/)|https?:|mailto:|tel:)/i;
const PROPERTIES = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'indeterminate']);

/** el('a', {href: '#/x', class: 'c', onclick: fn}, 'text', child, [more]) → an Element.
 * Strings become text nodes; null/undefined/false children and attributes are skipped. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'innerHTML' || key === 'outerHTML' || key === 'style') {
      throw new Error(`el(): '${key}' is not allowed (text only; styles live in style.css)`);
    }
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'dataset') {
      for (const [name, v] of Object.entries(value)) node.dataset[name] = String(v);
    } else if (key === 'class') {
      node.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : String(value);
    } else if ((key === 'href' || key === 'src' || key === 'action') && !SAFE_URL.test(String(value))) {
      // A CRM link or a website comes from data: a javascript: URL must never become a link.
      continue;
    } else if (PROPERTIES.has(key)) {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

/** Replace `node`'s children (the DOM's own replaceChildren would print null and arrays). */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Append to `node`, flattening arrays and skipping null/undefined/false, as `el` does. */
export function add(node, ...children) {
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// ---- toasts -------------------------------------------------------------------------------

export function toast(text, kind = 'info') {
  const box = el('div', { class: ['toast', kind], role: kind === 'error' ? 'alert' : 'status' },
    el('span', {}, text),
    el('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×'));
  const item = box;
  $('toasts').append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 12000 : 6000);
  return item;
}

// ---- the API ------------------------------------------------------------------------------

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return decodeURIComponent(rest.join('='));
  }
  return null;
}

function errorTitle(status) {
  if (status === 0) return 'the server cannot be reached';
  return { 401: 'not signed in', 403: 'not allowed', 404: 'not found', 409: 'refused', 413: 'too large',
    422: 'invalid input', 429: 'too many requests', 503: 'service unavailable' }[status] || `error ${status}`;
}

/** ctx.api: JSON in, JSON out. Throws ApiError; a 401 (session gone) sends the person to sign-in. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = cookie('leadflow_csrf') || state.csrf;
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, errorTitle(0), String(exc && exc.message || exc));
  }
  const type = response.headers.get('content-type') || '';
  let payload = null;
  if (response.status !== 204) {
    payload = type.includes('json') ? await response.json().catch(() => null) : await response.text();
  }
  if (!response.ok) {
    const title = payload && typeof payload === 'object' && payload.error ? payload.error : errorTitle(response.status);
    const detail = payload && typeof payload === 'object' ? payload.detail : payload;
    const error = new ApiError(response.status, title, detail);
    if (response.status === 401 && !path.startsWith('/api/v1/auth/')) signedOut(true);
    throw error;
  }
  return payload;
}

// ---- session ------------------------------------------------------------------------------

function showUser() {
  const who = $('who');
  const out = $('signout');
  if (state.user) {
    who.replaceChildren(
      el('span', { class: 'who-name' }, state.user.name || state.user.email),
      ' ',
      el('span', { class: ['badge', `role-${state.user.role}`], 'data-role': state.user.role }, state.user.role));
    who.hidden = false;
    out.hidden = false;
  } else {
    who.hidden = true;
    out.hidden = true;
  }
  document.body.dataset.role = state.user ? state.user.role : 'none';
}

function signedIn(answer) {
  state.startupError = null;
  state.user = answer.user;
  state.csrf = answer.csrf_token || null;
  showUser();
  openStream();
}

function signedOut(expired) {
  const wasSignedIn = Boolean(state.user);
  state.user = null;
  state.csrf = null;
  showUser();
  closeStream();
  if (!currentHash().startsWith('#/signin')) {
    const next = currentHash() && currentHash() !== '#/' ? `?next=${encodeURIComponent(currentHash())}` : '';
    navigate(`#/signin${next}`);
  }
  if (expired && wasSignedIn) toast('Your session ended: please sign in again.', 'error');
}

async function signOut() {
  try {
    await api('POST', '/api/v1/auth/logout');
  } catch (exc) {
    if (exc.status !== 401) toast(`Sign-out: ${exc.message}`, 'error');
  }
  signedOut(false);
}

// ---- live updates: one EventSource for the whole console ----------------------------------

function setLive(stateName, text) {
  const live = $('live');
  live.dataset.state = stateName;
  live.textContent = text;
}

function openStream() {
  closeStream();
  if (!window.EventSource) return setLive('off', 'no live updates');
  const stream = new EventSource('/api/v1/events', { withCredentials: true });
  state.stream = stream;
  let opened = false;
  stream.addEventListener('open', () => {
    setLive('on', 'live');
    // After a gap the server resumes from Last-Event-ID; pages may still refresh what they show.
    if (opened) events.dispatchEvent(new CustomEvent('reconnected'));
    opened = true;
  });
  stream.addEventListener('conversation', (message) => {
    let detail;
    try {
      detail = JSON.parse(message.data);
    } catch {
      return;
    }
    events.dispatchEvent(new CustomEvent('conversation', { detail }));
  });
  stream.addEventListener('error', () => {
    if (stream.readyState === EventSource.CLOSED) {
      // Refused (not signed in, or no /api/v1/events on this server): try again later, quietly.
      setLive('off', 'offline');
      state.stream = null;
      clearTimeout(state.retryTimer);
      state.retryTimer = setTimeout(() => { if (state.user) openStream(); }, 15000);
    } else {
      setLive('wait', 'reconnecting');
    }
  });
}

function closeStream() {
  clearTimeout(state.retryTimer);
  if (state.stream) state.stream.close();
  state.stream = null;
  setLive('off', 'offline');
}

// ---- routing ------------------------------------------------------------------------------

function currentHash() {
  return window.location.hash || '';
}

export function navigate(hash) {
  if (currentHash() === hash) route();
  else window.location.hash = hash;
}

function parse(hash) {
  const raw = hash.replace(/^#/, '') || '/inbox';
  const [path, search = ''] = raw.split('?');
  for (const [pattern, page] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      const params = {};
      if (match[1] !== undefined) {
        try {
          params.id = decodeURIComponent(match[1]);
        } catch {
          params.id = match[1];
        }
      }
      return { page, params, query: new URLSearchParams(search) };
    }
  }
  return { page: null, path, params: {}, query: new URLSearchParams(search) };
}

function markNav(page) {
  const active = page && (PAGES[page].nav || page);
  for (const link of document.querySelectorAll('#nav a[data-route]')) {
    if (link.dataset.route === active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function missingPage(root, name, exc) {
  root.replaceChildren(
    el('h1', {}, PAGES[name].title),
    el('div', { class: 'notice' },
      el('p', {}, `The ${PAGES[name].title.toLowerCase()} page is not available in this version of leadflow yet.`),
      el('p', { class: 'muted' }, `(pages/${name}.js could not be loaded: ${exc && exc.message ? exc.message : exc})`)));
}

async function route(focus = false) {
  const hash = currentHash();
  if (hash && !hash.startsWith('#/')) return; // an in-page anchor, not a route
  const target = parse(hash);
  const root = $('main');
  const id = ++state.renderId;
  if (typeof state.cleanup === 'function') {
    try { state.cleanup(); } catch (exc) { console.error(exc); }
  }
  state.cleanup = null;
  closeMenu();
  if (!target.page) {
    markNav(null);
    document.title = 'Not found · leadflow';
    root.replaceChildren(el('h1', {}, 'Not found'),
      el('p', {}, 'There is no page at this address. ', el('a', { href: '#/inbox' }, 'Go to the inbox.')));
    return;
  }
  if (!PAGES[target.page].public && !state.user) {
    signedOut(false);
    return;
  }
  markNav(target.page);
  document.title = `${PAGES[target.page].title} · leadflow`;
  root.replaceChildren(el('p', { class: 'muted', role: 'status' }, 'Loading…'));
  let module;
  try {
    module = await import(`./pages/${target.page}.js`);
  } catch (exc) {
    if (id === state.renderId) missingPage(root, target.page, exc);
    return;
  }
  if (id !== state.renderId) return; // the person moved on while the module loaded
  root.replaceChildren();
  const ctx = makeCtx(target);
  try {
    const cleanup = await module.render(root, ctx);
    if (id === state.renderId) state.cleanup = cleanup || null;
    else if (typeof cleanup === 'function') cleanup();
  } catch (exc) {
    if (id !== state.renderId) return;
    if (exc instanceof ApiError && exc.status === 401) return; // already on the way to sign-in
    console.error(exc);
    root.replaceChildren(el('h1', {}, PAGES[target.page].title),
      el('div', { class: 'notice error', role: 'alert' }, `This page could not be shown: ${exc.message || exc}`));
  }
  // After a navigation, focus moves to the page's heading (screen readers announce the new
  // page) — unless the page put it somewhere itself (the sign-in form's first field).
  if (focus && id === state.renderId && !root.contains(document.activeElement)) {
    const heading = root.querySelector('h1');
    (heading || root).setAttribute('tabindex', '-1');
    (heading || root).focus({ preventScroll: false });
  }
}

function makeCtx(target) {
  const user = state.user;
  return {
    api,
    el,
    fill,
    add,
    toast,
    navigate,
    events,
    user,
    params: target.params,
    query: target.query,
    canWrite: Boolean(user && user.role !== 'viewer'),
    isAdmin: Boolean(user && user.role === 'admin'),
    signedIn: (answer) => signedIn(answer),
    /** Why the console could not ask who is signed in at start (no sign-in on the server, or it is down). */
    startupError: state.startupError || null,
    /** Put the page's filters into the address without re-rendering the page. */
    setQuery(query) {
      const path = currentHash().replace(/^#/, '').split('?')[0] || '/inbox';
      const search = query.toString();
      history.replaceState(null, '', `#${path}${search ? `?${search}` : ''}`);
    },
  };
}

// ---- chrome: menu, skip link, sign-out ----------------------------------------------------

function closeMenu() {
  $('nav').classList.remove('open');
  $('nav-toggle').setAttribute('aria-expanded', 'false');
}

function wireChrome() {
  $('nav-toggle').addEventListener('click', () => {
    const open = !$('nav').classList.contains('open');
    $('nav').classList.toggle('open', open);
    $('nav-toggle').setAttribute('aria-expanded', String(open));
    if (open) $('nav').querySelector('a').focus();
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && $('nav').classList.contains('open')) {
      // Registered first: a page's own Escape (back to the list) waits for the next press.
      event.stopImmediatePropagation();
      closeMenu();
      $('nav-toggle').focus();
    }
  });
  $('skip-link').addEventListener('click', (event) => {
    // `#main` would be taken for a route; move focus instead.
    event.preventDefault();
    const main = $('main');
    const target = main.querySelector('h1') || main;
    target.setAttribute('tabindex', '-1');
    target.focus();
  });
  $('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => route(true));
}

async function start() {
  wireChrome();
  try {
    signedIn(await api('GET', '/api/v1/auth/me'));
  } catch (exc) {
    state.user = null;
    showUser();
    if (exc.status !== 401) {
      // 404: this server has no sign-in yet; 0/5xx: it is down. The sign-in page says so.
      state.startupError = exc;
    }
  }
  if (!state.user && !currentHash().startsWith('#/signin')) {
    signedOut(false);
    return;
  }
  if (!currentHash() || currentHash() === '#/' || currentHash() === '#') {
    history.replaceState(null, '', '#/inbox');
  }
  route(false);
}

export const shell = { state };

start();
