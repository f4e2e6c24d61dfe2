// The maas operator console: a small single-page app over the JSON API.
//
// Served by maas at /console with no outside asset. It keeps the bearer token in sessionStorage,
// sends it on every API call, and goes back to the login form on any 401. Pages are picked by
// the hash (#/models, #/models/NAME, #/drift, #/audit, #/jobs, #/jobs/ID) and built with plain
// DOM calls; charts are inline SVG drawn here.
//
// This file holds what every page shares (the API client, DOM and formatting helpers, layout,
// routing, login); each section's pages are in a script of their own (charts.js, models.js,
// drift.js, audit.js, jobs.js), classic scripts loaded with `defer` after this one, so they
// share its top-level names. The app starts on DOMContentLoaded, once all of them ran.
'use strict';

const TOKEN_KEY = 'maas.console.token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const root = document.getElementById('app');

const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  me: null,
  // Shown once on the login form (why the operator is back there).
  notice: null,
  // Where to go after logging in.
  next: null,
};

// ---------------------------------------------------------------------------------------------
// The API

/** An error answer from the API: its status and the `{code, message, request_id}` body. */
class ApiFailure extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

/** Thrown after a 401 sent the operator back to the login form: nothing more to show. */
class SessionEnded extends Error {}

async function request(method, path, { json, form, body, anonymous } = {}) {
  const headers = {};
  if (!anonymous) headers.Authorization = `Bearer ${session.token}`;
  let payload;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(json);
  } else if (form !== undefined) {
    payload = form;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = body;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new ApiFailure(0, 'network_error', `the server did not answer (${e.message})`, null);
  }
  if (response.status === 401 && !anonymous) {
    endSession('Your session has ended: log in again.');
    throw new SessionEnded('unauthorized');
  }
  return response;
}

async function readFailure(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body.code === 'string') {
      return new ApiFailure(response.status, body.code, body.message || '', body.request_id);
    }
  } catch (_) {
    // Not the API's error body (a proxy's page, say): show the text itself.
  }
  return new ApiFailure(
    response.status,
    `http_${response.status}`,
    text.slice(0, 300) || response.statusText,
    response.headers.get('x-request-id'),
  );
}

async function api(method, path, options) {
  const response = await request(method, path, options);
  if (!response.ok) throw await readFailure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

const get = (path) => api('GET', path);
const post = (path, json) => api('POST', path, { json });
const enc = encodeURIComponent;

const isMissingRoute = (e) => e instanceof ApiFailure && e.code === 'route_not_found';

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  appendAll(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') {
      const names = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
      if (names) el.className = names;
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key.startsWith('on')) {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting

const pad = (n, width = 2) => String(n).padStart(width, '0');

function formatTime(value) {
  if (!value) return '—';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${pad(Math.round(seconds % 60))} s`;
  return `${Math.floor(seconds / 3600)} h ${pad(Math.round((seconds % 3600) / 60))} min`;
}

function formatBytes(n) {
  if (!Number.isFinite(n)) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** JSON for people: arrays of plain values on one line, objects one key a line. */
function prettyJson(value, indent = '') {
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    if (value.every((v) => v === null || typeof v !== 'object')) {
      return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
    }
    return `[\n${value.map((v) => inner + prettyJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 0) return '{}';
    const lines = entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${prettyJson(v, inner)}`);
    return `{\n${lines.join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}

function compactJson(value, max = 90) {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  if (text === undefined) return '—';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const shapeText = (shape) => `[${(shape || []).map((d) => (d === null ? '?' : d)).join(', ')}]`;

// ---------------------------------------------------------------------------------------------
// Small components

const badge = (state, id) =>
  h('span', { class: `badge badge-${String(state).replace(/[^a-z0-9_-]/gi, '')}`, id }, String(state));

function errorBox(err) {
  if (err instanceof SessionEnded) return null;
  if (err instanceof ApiFailure) {
    return h(
      'div',
      { class: 'alert alert-error', role: 'alert' },
      h('div', { class: 'alert-title' }, h('code', { class: 'error-code' }, err.code), err.status ? h('span', { class: 'muted' }, `HTTP ${err.status}`) : null),
      h('div', { class: 'alert-body' }, err.message),
      err.requestId ? h('div', { class: 'alert-meta' }, `request id ${err.requestId}`) : null,
    );
  }
  return h('div', { class: 'alert alert-error', role: 'alert' }, h('div', { class: 'alert-body' }, String(err && err.message ? err.message : err)));
}

const okBox = (...children) => h('div', { class: 'alert alert-ok', role: 'status' }, ...children);
const infoBox = (...children) => h('div', { class: 'alert alert-info', role: 'status' }, ...children);
const emptyState = (title, ...children) => h('div', { class: 'empty' }, h('div', { class: 'empty-title' }, title), children.length ? h('div', { class: 'empty-body' }, ...children) : null);
function stat(label, value, cls) {
  return h('div', { class: ['stat', cls] }, h('div', { class: 'stat-value' }, String(value)), h('div', { class: 'stat-label' }, label));
}

const loading = () => h('div', { class: 'loading' }, 'Loading…');

function card(title, { id, actions, subtitle } = {}, ...body) {
  return h(
    'section',
    { class: 'card', id },
    h('div', { class: 'card-head' }, h('div', {}, h('h2', {}, title), subtitle ? h('p', { class: 'card-sub' }, subtitle) : null), actions ? h('div', { class: 'card-actions' }, actions) : null),
    h('div', { class: 'card-body' }, ...body),
  );
}

function pageHead(title, subtitle, ...actions) {
  return h(
    'div',
    { class: 'page-head' },
    h('div', {}, h('h1', {}, title), subtitle ? h('p', { class: 'page-sub' }, subtitle) : null),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null,
  );
}

function table(columns, rows, { id, empty } = {}) {
  if (!rows.length && empty) return empty;
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'table', id },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.class }, c.title)))),
      h('tbody', {}, rows.map((row) => h('tr', {}, columns.map((c) => h('td', { class: c.class }, c.cell(row)))))),
    ),
  );
}

function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), control, hint ? h('span', { class: 'field-hint' }, hint) : null);
}

function button(label, onclick, { kind = 'secondary', id, type = 'button', title, data } = {}) {
  const b = h('button', { class: `btn btn-${kind}`, type, id, title, onclick }, label);
  if (data) for (const [k, v] of Object.entries(data)) b.dataset[k] = v;
  return b;
}

/** Run `work` with `btn` disabled and its label swapped, whatever happens. */
async function busy(btn, label, work) {
  const before = btn.textContent;
  btn.disabled = true;
  btn.textContent = label;
  try {
    return await work();
  } finally {
    btn.disabled = false;
    btn.textContent = before;
  }
}

/** Fill `target` with what `build` returns, or with the error it threw. */
async function fill(target, build) {
  target.replaceChildren(loading());
  try {
    target.replaceChildren(...[await build()].flat().filter(Boolean));
  } catch (e) {
    target.replaceChildren(...[errorBox(e)].filter(Boolean));
  }
}

// ---------------------------------------------------------------------------------------------
// Layout and routing

const SECTIONS = [
  ['models', 'Models', 'Deploy, predict, pause'],
  ['drift', 'Drift', 'Distributions, drifted rows'],
  ['audit', 'Audit trail', 'Who changed what, when'],
  ['jobs', 'Jobs', 'Training scheduler'],
];

let crumbsEl = null;

function shell(section) {
  crumbsEl = h('nav', { class: 'crumbs', 'aria-label': 'breadcrumb' });
  const content = h('main', { class: 'content', id: 'content' });
  const me = session.me;
  root.replaceChildren(
    h(
      'aside',
      { class: 'sidebar' },
      h(
        'div',
        { class: 'sidebar-inner' },
        h('a', { class: 'brand', href: '#/models' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, 'm'), h('span', { class: 'brand-name' }, 'maas'), h('span', { class: 'brand-sub' }, 'console')),
        h(
          'nav',
          { class: 'nav', 'aria-label': 'sections' },
          SECTIONS.map(([id, label, hint]) => h('a', { href: `#/${id}`, class: ['nav-link', id === section && 'active'], id: `nav-${id}` }, h('span', { class: 'nav-label' }, label), h('span', { class: 'nav-hint' }, hint))),
        ),
      ),
    ),
    h(
      'div',
      { class: 'main' },
      h(
        'header',
        { class: 'topbar' },
        crumbsEl,
        h(
          'div',
          { class: 'topbar-right' },
          h('a', { class: 'toplink', href: '/docs/', target: '_blank', rel: 'noopener', id: 'link-swagger' }, 'Swagger UI'),
          h('a', { class: 'toplink', href: '/metrics', target: '_blank', rel: 'noopener', id: 'link-metrics' }, 'Metrics'),
          h('a', { class: 'toplink', href: '/openapi.json', target: '_blank', rel: 'noopener', id: 'link-openapi' }, 'API JSON'),
          me ? h('span', { class: 'user', id: 'user', title: `logged in with a ${me.credential}` }, h('span', { class: 'user-name' }, me.username), h('span', { class: 'user-role' }, me.role)) : null,
          button('Log out', () => endSession('You are logged out.'), { id: 'logout', kind: 'ghost' }),
        ),
      ),
      content,
    ),
  );
  return content;
}

function setCrumbs(items) {
  document.title = `${items.map(([label]) => label).reverse().join(' · ')} — maas console`;
  crumbsEl.replaceChildren(
    ...items.flatMap(([label, href], i) => [i ? h('span', { class: 'crumb-sep' }, '/') : null, href ? h('a', { href }, label) : h('span', { class: 'crumb-current' }, label)]).filter(Boolean),
  );
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/models';
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  return { parts, query: new URLSearchParams(query || '') };
}

const PAGES = {
  models: (content, route) => (route.arg ? modelPage(content, route.arg) : modelsPage(content)),
  drift: (content, route) => driftPage(content, route.query),
  audit: (content, route) => auditPage(content, route.query),
  jobs: (content, route) => (route.arg ? jobPage(content, route.arg) : jobsPage(content)),
};

async function render() {
  if (!session.token) {
    loginPage();
    return;
  }
  if (!session.me) {
    try {
      session.me = await get('/v1/auth/me');
    } catch (e) {
      if (e instanceof SessionEnded) return;
      // The header then shows no user; the pages report their own errors.
    }
  }
  const { parts, query } = parseHash();
  const [section, arg] = parts;
  const page = PAGES[section];
  if (!page) {
    location.hash = '#/models';
    return;
  }
  const content = shell(section);
  try {
    await page(content, { arg, query });
  } catch (e) {
    const box = errorBox(e);
    if (box) content.append(box);
  }
}

function endSession(message) {
  session.token = null;
  session.me = null;
  session.notice = message;
  if (location.hash && location.hash !== '#/login') session.next = location.hash;
  render();
}

// ---------------------------------------------------------------------------------------------
// Login

function loginPage() {
  document.title = 'Log in — maas console';
  const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'off', spellcheck: 'false' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { class: 'btn btn-primary btn-block', type: 'submit', id: 'login-submit' }, 'Log in');
  const message = h('div', { id: 'login-message' }, session.notice ? infoBox(session.notice) : null);
  session.notice = null;
  const form = h(
    'form',
    {
      class: 'login-card',
      id: 'login-form',
      onsubmit: async (event) => {
        event.preventDefault();
        await busy(submit, 'Logging in…', async () => {
          try {
            const answer = await api('POST', '/v1/auth/token', { json: { username: username.value, password: password.value }, anonymous: true });
            session.token = answer.access_token;
            const next = session.next;
            session.next = null;
            if (next && next !== location.hash) location.hash = next;
            else render();
          } catch (e) {
            message.replaceChildren(errorBox(e));
            password.select();
          }
        });
      },
    },
    h('div', { class: 'login-brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, 'm'), h('span', { class: 'login-title' }, 'maas console')),
    h('p', { class: 'login-sub' }, 'Log in with a maas user to manage models, predictions and drift.'),
    message,
    field('User name', username),
    field('Password', password),
    submit,
    h('p', { class: 'login-foot' }, 'API reference: ', h('a', { href: '/docs/', target: '_blank', rel: 'noopener' }, 'Swagger UI')),
  );
  root.replaceChildren(h('div', { class: 'login-page' }, form));
  username.focus();
}

// ---------------------------------------------------------------------------------------------
// Start, once every page's script (all loaded with `defer`, in order) has run.

document.addEventListener('DOMContentLoaded', () => {
  window.addEventListener('hashchange', render);
  render();
});
