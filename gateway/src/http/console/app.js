// The maas operator console: a small single-page app over the JSON API.
//
// Served by maas at /console with no outside asset. It keeps the bearer token in sessionStorage,
// sends it on every API call, and goes back to the login form on any 401. Pages are picked by
// the hash (#/models, #/models/NAME, #/drift, #/audit, #/jobs) and built with plain DOM calls;
// charts are inline SVG drawn here.
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
// Charts (inline SVG)

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

/** Upper end and ticks of a value axis that starts at 0. */
function valueAxis(max, { integer = false, count = 4 } = {}) {
  let step = niceStep(Math.max(max, integer ? 1 : 1e-9) / count);
  if (integer) step = Math.max(1, Math.round(step));
  const top = Math.max(step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  return { top, ticks };
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);

function timeTicks(t0, t1, count = 5) {
  const step = TIME_STEPS.find((s) => (t1 - t0) / s <= count) || TIME_STEPS[TIME_STEPS.length - 1];
  const offset = new Date(t0).getTimezoneOffset() * 60000;
  const ticks = [];
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) ticks.push(t);
  const d = (t) => new Date(t);
  const sameDay = d(t0).toDateString() === d(t1).toDateString();
  const label = (t) => {
    const time = step < 60000 ? `${pad(d(t).getHours())}:${pad(d(t).getMinutes())}:${pad(d(t).getSeconds())}` : `${pad(d(t).getHours())}:${pad(d(t).getMinutes())}`;
    return sameDay ? time : `${pad(d(t).getMonth() + 1)}-${pad(d(t).getDate())} ${time}`;
  };
  return ticks.map((t) => ({ t, label: label(t) }));
}

/**
 * A chart of values over time: `series` is [{name, cls, shape, points: [{t, y, title}]}].
 * Points of a series are joined in time order unless the series says `line: false`.
 */
function timeChart(series, { yLabel, width = 560, height = 210 } = {}) {
  const m = { l: 48, r: 16, t: 14, b: 30 };
  const points = series.flatMap((s) => s.points);
  let t0 = Math.min(...points.map((p) => p.t));
  let t1 = Math.max(...points.map((p) => p.t));
  // At least ten seconds wide, so that a burst of events does not collapse into one point.
  const padding = Math.max((t1 - t0) * 0.06, (10000 - (t1 - t0)) / 2, 500);
  t0 -= padding;
  t1 += padding;
  const y = valueAxis(Math.max(...points.map((p) => p.y)), { integer: true });
  const px = (t) => m.l + ((t - t0) / (t1 - t0)) * (width - m.l - m.r);
  const py = (v) => height - m.b - (v / y.top) * (height - m.t - m.b);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': yLabel });
  for (const v of y.ticks) {
    chart.append(svg('line', { x1: m.l, x2: width - m.r, y1: py(v), y2: py(v), class: v === 0 ? 'axis' : 'grid' }));
    chart.append(svg('text', { x: m.l - 8, y: py(v) + 4, class: 'tick', 'text-anchor': 'end' }, String(v)));
  }
  for (const { t, label } of timeTicks(t0, t1, Math.max(3, Math.floor(width / 150)))) {
    chart.append(svg('line', { x1: px(t), x2: px(t), y1: height - m.b, y2: height - m.b + 4, class: 'axis' }));
    chart.append(svg('text', { x: px(t), y: height - m.b + 17, class: 'tick', 'text-anchor': 'middle' }, label));
  }
  chart.append(svg('text', { x: 12, y: m.t + (height - m.t - m.b) / 2, class: 'axis-label', 'text-anchor': 'middle', transform: `rotate(-90 12 ${m.t + (height - m.t - m.b) / 2})` }, yLabel));
  for (const s of series) {
    const sorted = [...s.points].sort((a, b) => a.t - b.t);
    if (s.line !== false && sorted.length > 1) {
      chart.append(svg('polyline', { points: sorted.map((p) => `${px(p.t).toFixed(1)},${py(p.y).toFixed(1)}`).join(' '), class: `series-line ${s.cls}` }));
    }
    for (const p of sorted) {
      const x = px(p.t);
      const yy = py(p.y);
      const mark =
        s.shape === 'diamond'
          ? svg('path', { d: `M${x} ${yy - 6}L${x + 6} ${yy}L${x} ${yy + 6}L${x - 6} ${yy}Z`, class: `series-mark ${s.cls}` })
          : svg('circle', { cx: x, cy: yy, r: 4, class: `series-mark ${s.cls}` });
      mark.append(svg('title', {}, p.title));
      chart.append(mark);
    }
  }
  return chart;
}

/** A value axis in seconds whose ticks fall on round durations (15 s, 5 min, 1 h…). */
function durationAxis(max, count = 5) {
  const step = max < 1 ? niceStep(max / count) : TIME_STEPS.map((ms) => ms / 1000).find((s) => max / s <= count) || niceStep(max / count);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  return { top, ticks };
}

/** Horizontal bars: rows are [{label, value, cls, title}], values in seconds. */
function durationChart(rows, { width = 1080 } = {}) {
  const m = { l: 200, r: 90, t: 8, b: 28 };
  const rowHeight = 26;
  const height = m.t + rows.length * rowHeight + m.b;
  const axis = durationAxis(Math.max(...rows.map((r) => r.value), 0.001));
  const px = (v) => m.l + (v / axis.top) * (width - m.l - m.r);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': 'job durations' });
  for (const v of axis.ticks) {
    chart.append(svg('line', { x1: px(v), x2: px(v), y1: m.t, y2: height - m.b, class: v === 0 ? 'axis' : 'grid' }));
    chart.append(svg('text', { x: px(v), y: height - m.b + 17, class: 'tick', 'text-anchor': 'middle' }, v === 0 ? '0' : formatDuration(v)));
  }
  rows.forEach((row, i) => {
    const top = m.t + i * rowHeight;
    const label = row.label.length > 28 ? `${row.label.slice(0, 27)}…` : row.label;
    chart.append(svg('text', { x: m.l - 10, y: top + rowHeight / 2 + 4, class: 'bar-label', 'text-anchor': 'end' }, label));
    const bar = svg('rect', { x: m.l, y: top + 4, width: Math.max(2, px(row.value) - m.l), height: rowHeight - 8, rx: 3, class: `bar ${row.cls}` });
    bar.append(svg('title', {}, row.title));
    chart.append(bar);
    chart.append(svg('text', { x: px(row.value) + 6, y: top + rowHeight / 2 + 4, class: 'tick', 'text-anchor': 'start' }, formatDuration(row.value)));
  });
  return chart;
}

function legend(items) {
  return h('div', { class: 'legend' }, items.map(([cls, label]) => h('span', { class: 'legend-item' }, h('span', { class: `legend-swatch ${cls}` }), label)));
}

// ---------------------------------------------------------------------------------------------
// Layout and routing

const SECTIONS = [
  ['models', 'Models', 'Deploy, predict, pause'],
  ['drift', 'Drift', 'Drifted rows over time'],
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
  jobs: (content) => jobsPage(content),
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
// Models

function versionChips(model) {
  if (!model.versions.length) return h('span', { class: 'muted' }, 'none yet');
  return h(
    'span',
    { class: 'chips' },
    model.versions.map((v) =>
      h(
        'span',
        { class: ['chip', `chip-${v.state}`, v.version === model.default_version && 'chip-default'], title: `version ${v.version}: ${v.state}${v.version === model.default_version ? ', default' : ''}, created ${formatTime(v.created_at)}` },
        `v${v.version}`,
      ),
    ),
  );
}

async function modelsPage(content) {
  setCrumbs([['Models']]);
  const list = h('div');
  const load = () =>
    fill(list, async () => {
      const { models } = await get('/v1/models');
      datalist.replaceChildren(...models.map((m) => h('option', { value: m.name })));
      return table(
        [
          { title: 'Model', cell: (m) => h('a', { class: 'strong-link', href: `#/models/${enc(m.name)}` }, m.name) },
          { title: 'State', cell: (m) => badge(m.state) },
          { title: 'Default version', cell: (m) => (m.default_version ? `v${m.default_version}` : h('span', { class: 'muted' }, '—')) },
          { title: 'Versions', cell: versionChips },
          { title: 'Updated', class: 'nowrap muted', cell: (m) => formatTime(m.updated_at) },
          { title: '', class: 'right', cell: (m) => h('a', { class: 'btn btn-ghost btn-sm', href: `#/drift?model=${enc(m.name)}` }, 'Drift') },
        ],
        models,
        { id: 'models-table', empty: emptyState('No models yet', 'Deploy the first one with the form below: an ONNX file is all it takes.') },
      );
    });
  const datalist = h('datalist', { id: 'model-names' });
  content.append(
    pageHead('Models', 'Every model this server keeps, its versions and the state of its service.', button('Refresh', load, { id: 'models-refresh' })),
    card('Models', {}, list),
    deployCard(load),
    datalist,
  );
  await load();
}

function deployCard(onDeployed) {
  const name = h('input', { id: 'deploy-name', name: 'name', required: true, placeholder: 'iris', list: 'model-names', autocomplete: 'off', pattern: '[A-Za-z0-9][A-Za-z0-9._-]*' });
  const file = h('input', { id: 'deploy-file', name: 'model', type: 'file', accept: '.onnx', required: true });
  const classNames = h('input', { id: 'deploy-class-names', name: 'class_names', placeholder: '["setosa", "versicolor", "virginica"]', autocomplete: 'off', spellcheck: 'false' });
  // Not named `append`: a form's named controls shadow its methods (form.append).
  const appendBox = h('input', { id: 'deploy-append', name: 'keep-deployed', type: 'checkbox' });
  const training = h('input', { id: 'deploy-training', name: 'training_data', type: 'file', accept: '.csv,text/csv' });
  const label = h('input', { id: 'deploy-label-column', name: 'label_column', placeholder: 'species', autocomplete: 'off' });
  const features = h('input', { id: 'deploy-feature-names', name: 'feature_names', placeholder: '["sepal_length", "sepal_width", "petal_length", "petal_width"]', autocomplete: 'off', spellcheck: 'false' });
  const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'deploy-submit' }, 'Deploy');
  const result = h('div', { id: 'deploy-result', class: 'form-result' });

  const jsonList = (input, what) => {
    const text = input.value.trim();
    if (!text) return null;
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new ApiFailure(0, 'invalid_json', `${what} must be a JSON list of strings: ${e.message}`);
    }
    if (!Array.isArray(parsed) || !parsed.every((s) => typeof s === 'string')) {
      throw new ApiFailure(0, 'invalid_argument', `${what} must be a JSON list of strings, like ["a", "b"]`);
    }
    return text;
  };

  const form = h(
    'form',
    {
      id: 'deploy-form',
      class: 'form',
      onsubmit: async (event) => {
        event.preventDefault();
        await busy(submit, 'Deploying…', async () => {
          try {
            const model = name.value.trim();
            if (!file.files.length) throw new ApiFailure(0, 'invalid_argument', 'choose the .onnx file to upload');
            const body = new FormData();
            body.append('model', file.files[0], file.files[0].name);
            const classes = jsonList(classNames, 'class names');
            if (classes) body.append('class_names', classes);
            const featureList = jsonList(features, 'feature names');
            if (featureList) body.append('feature_names', featureList);
            if (training.files.length) body.append('training_data', training.files[0], training.files[0].name);
            if (label.value.trim()) body.append('label_column', label.value.trim());
            if (appendBox.checked) body.append('append', 'true');
            const v = await api('POST', `/v1/models/${enc(model)}/versions`, { form: body });
            result.replaceChildren(
              okBox(
                h('strong', {}, `Deployed ${v.name} version ${v.version}`),
                ` on ${v.backend}${v.default ? ', now the default' : ''}${v.ready ? '' : ' (loading)'}. `,
                h('a', { href: `#/models/${enc(v.name)}`, id: 'deploy-open' }, `Open ${v.name} →`),
              ),
            );
            file.value = '';
            training.value = '';
            await onDeployed();
          } catch (e) {
            result.replaceChildren(...[errorBox(e)].filter(Boolean));
          }
        });
      },
    },
    h(
      'div',
      { class: 'form-grid' },
      field('Model name', name, 'Letters, digits, ".", "_" and "-". A new name creates the model.'),
      field('ONNX file', file, 'The version is loaded and test-run before it is recorded.'),
      h('div', { class: 'span-2' }, field('Class names (optional)', classNames, 'A JSON list: label i of a classifier is shown as the i-th name.')),
    ),
    h(
      'details',
      { class: 'form-more' },
      h('summary', {}, 'Drift baseline (optional)'),
      h(
        'div',
        { class: 'form-grid' },
        field('Training data (CSV)', training, 'A sample of its rows becomes the drift baseline.'),
        field('Label column', label, 'The CSV column that is not a feature.'),
        h('div', { class: 'span-2' }, field('Feature names', features, 'A JSON list naming the model\u2019s input columns.')),
      ),
    ),
    h(
      'div',
      { class: 'form-foot' },
      h('label', { class: 'check' }, appendBox, h('span', {}, 'Append: keep the deployed versions serving beside this one (by default it replaces them; they stay kept)')),
      submit,
    ),
    result,
  );
  return card('Deploy a version', { id: 'deploy-card', subtitle: 'Upload an ONNX file as the next version of a model.' }, form);
}

// ---------------------------------------------------------------------------------------------
// One model

const STATE_HELP = {
  created: 'The model exists but no version was ever deployed: upload one on the Models page.',
  running: 'A version is deployed and answering predicts.',
  paused: 'Every predict answers 503 model_paused; the versions stay loaded.',
  finished: 'Every version is undeployed and the history is kept. Deploy a version to serve again.',
};

const ACTION_STYLE = {
  deploy: ['Deploy', 'primary'],
  update: ['Update…', 'secondary'],
  pause: ['Pause', 'warn'],
  resume: ['Resume', 'primary'],
  finish: ['Finish', 'danger'],
};

const ACTION_DONE = {
  pause: (name) => `${name} is paused: predicts answer 503 model_paused until it is resumed.`,
  resume: (name) => `${name} answers predicts again.`,
  finish: (name) => `${name} is finished: every version is undeployed, the history is kept.`,
};

async function modelPage(content, name) {
  setCrumbs([['Models', '#/models'], [name]]);
  const head = h('div');
  const feedback = h('div', { id: 'action-result' });
  const service = h('div');
  const versions = h('div');
  const stored = storedPredictionsPanel(name);
  const predict = predictPanel(name, () => stored.reload());
  content.append(
    head,
    feedback,
    card('Service', { id: 'service-card', subtitle: 'The model\u2019s state and the actions it allows now.' }, service),
    card('Versions', { id: 'versions-card', subtitle: 'Every version kept for this model, newest first.' }, versions),
    h('div', { class: 'grid-2' }, predict.element, stored.element),
  );

  /** Run one change, say how it went, and show the model as it is now. */
  const act = async (btn, label, work, done) => {
    await busy(btn, label, async () => {
      try {
        await work();
        feedback.replaceChildren(okBox(done));
      } catch (e) {
        feedback.replaceChildren(...[errorBox(e)].filter(Boolean));
      }
      await refresh().catch((e) => feedback.append(...[errorBox(e)].filter(Boolean)));
    });
  };

  async function refresh() {
    const [list, info] = await Promise.all([get(`/v1/models/${enc(name)}/versions`), get(`/v1/models/${enc(name)}/actions`)]);
    const deployed = list.versions.filter((v) => v.state === 'deployed');
    head.replaceChildren(
      pageHead(
        h('span', { class: 'title-with-badge' }, h('span', { id: 'model-name' }, name), badge(info.state, 'model-state')),
        list.default_version ? `Predicts without a version go to version ${list.default_version}.` : 'No version answers predicts now.',
        h('a', { class: 'btn btn-secondary', href: `#/drift?model=${enc(name)}` }, 'Drift'),
        button('Refresh', (ev) => busy(ev.currentTarget, 'Refreshing…', refresh), { id: 'model-refresh' }),
      ),
    );
    service.replaceChildren(serviceControls(name, info, list, act));
    versions.replaceChildren(versionsTable(name, list, deployed, act));
    predict.setVersions(list);
    stored.setVersions(list);
  }
  await refresh();
}

function serviceControls(name, info, list, act) {
  const buttons = [];
  const extra = h('div', { class: 'service-extra' });
  for (const action of info.actions) {
    const [label, kind] = ACTION_STYLE[action] || [action, 'secondary'];
    if (action === 'deploy') {
      const choice = h(
        'select',
        { id: 'action-deploy-version', 'aria-label': 'version to deploy' },
        [...list.versions].reverse().map((v) => h('option', { value: v.version }, `v${v.version} (${v.state})`)),
      );
      const b = button(label, () => act(b, 'Deploying…', () => post(`/v1/models/${enc(name)}/actions/deploy`, { version: Number(choice.value) }), `Deployed version ${choice.value} of ${name}.`), { kind, data: { action } });
      buttons.push(h('span', { class: 'inline-group' }, choice, b));
    } else if (action === 'update') {
      const b = button(label, () => {
        if (extra.firstChild) {
          extra.replaceChildren();
          return;
        }
        const text = h('textarea', { class: 'code', rows: 7, spellcheck: 'false', id: 'update-body' });
        const current = (list.versions.find((v) => v.default) || list.versions.find((v) => v.serving) || {}).serving;
        text.value = prettyJson({ serving: { instances: current ? current.instances : 1, max_batch_size: current ? current.max_batch_size : 32 } });
        const apply = button('Apply update', () => {
          let body;
          try {
            body = JSON.parse(text.value);
          } catch (e) {
            extra.append(errorBox(new ApiFailure(0, 'invalid_json', e.message)));
            return;
          }
          act(apply, 'Updating…', () => post(`/v1/models/${enc(name)}/actions/update`, body), `Updated the service of ${name}.`);
        }, { kind: 'primary', id: 'update-apply' });
        extra.replaceChildren(field('Serving options and drift settings (JSON)', text, 'Fields not given keep their value; each deployed version is reloaded without a gap.'), apply);
      }, { kind, data: { action } });
      buttons.push(b);
    } else {
      const b = button(label, () => {
        if (action === 'finish' && !window.confirm(`Finish ${name}? Every version is undeployed; the history is kept.`)) return;
        act(b, `${label}…`, () => post(`/v1/models/${enc(name)}/actions/${action}`), ACTION_DONE[action] ? ACTION_DONE[action](name) : `${label}: done.`);
      }, { kind, data: { action }, id: `action-${action}` });
      buttons.push(b);
    }
  }
  return h(
    'div',
    { class: 'service' },
    h(
      'div',
      { class: 'service-row' },
      h('div', { class: 'service-state' }, badge(info.state), h('span', { class: 'service-help' }, STATE_HELP[info.state] || '')),
      buttons.length ? h('div', { class: 'button-row', id: 'service-actions' }, buttons) : h('span', { class: 'muted' }, 'No action is allowed in this state.'),
    ),
    extra,
  );
}

function tensorList(tensors) {
  return h('div', { class: 'tensors' }, tensors.map((t) => h('div', {}, h('code', {}, t.name), ' ', h('span', { class: 'muted' }, `${t.element_type} ${shapeText(t.shape)}`))));
}

function versionsTable(name, list, deployed, act) {
  const onlyDeployed = (v) => deployed.length === 1 && deployed[0].version === v.version;
  return table(
    [
      {
        title: 'Version',
        cell: (v) => h('span', { class: 'version-cell', title: `sha256 ${v.sha256}\n${formatBytes(v.size_bytes)} from ${v.source}` }, h('strong', {}, `v${v.version}`), v.default ? h('span', { class: 'tag tag-default' }, 'default') : null),
      },
      {
        title: 'State',
        cell: (v) => [badge(v.state), v.load_error ? h('div', { class: 'error-text' }, v.load_error) : null],
      },
      {
        title: 'Serving',
        cell: (v) =>
          v.serving
            ? h('div', {}, h('div', {}, h('strong', {}, v.serving.backend), ' ', h('span', { class: v.ready ? 'dot dot-ok' : 'dot dot-wait', title: v.ready ? 'ready' : 'warming up' })), h('div', { class: 'muted small nowrap' }, `${v.serving.instances} instance${v.serving.instances === 1 ? '' : 's'} · ${v.serving.batching ? `batches ≤ ${v.serving.max_batch_size}` : 'no batching'}`))
            : h('div', {}, h('span', {}, v.backend), h('div', { class: 'muted small' }, 'not loaded')),
      },
      { title: 'Inputs', cell: (v) => tensorList(v.inputs) },
      { title: 'Outputs', cell: (v) => [tensorList(v.outputs), v.class_names ? h('div', { class: 'muted small' }, `classes: ${v.class_names.join(', ')}`) : null] },
      { title: 'Created', class: 'nowrap muted', cell: (v) => formatTime(v.created_at) },
      {
        title: '',
        class: 'right nowrap',
        cell: (v) => {
          const out = [];
          if (!onlyDeployed(v)) {
            const b = button('Roll back', () => {
              if (!window.confirm(`Serve only version ${v.version} of ${name}? The other versions are undeployed.`)) return;
              act(b, 'Rolling back…', () => post(`/v1/models/${enc(name)}/versions/${v.version}/deploy`, { append: false }), `${name} now serves version ${v.version} only.`);
            }, { kind: 'secondary', title: 'Deploy this version alone', data: { rollback: v.version } });
            b.classList.add('btn-sm');
            out.push(b);
          }
          if (v.state === 'deployed') {
            const b = button('Undeploy', () => {
              if (!window.confirm(`Undeploy version ${v.version} of ${name}?`)) return;
              act(b, 'Undeploying…', () => post(`/v1/models/${enc(name)}/versions/${v.version}/undeploy`), `Undeployed version ${v.version} of ${name}.`);
            }, { kind: 'danger-ghost', data: { undeploy: v.version } });
            b.classList.add('btn-sm');
            out.push(b);
          }
          return h('span', { class: 'row-actions' }, out);
        },
      },
    ],
    [...list.versions].sort((a, b) => b.version - a.version),
    { id: 'versions-table', empty: emptyState('No versions', 'Deploy one from the Models page.') },
  );
}

function versionOptions(list, select, { withDefault }) {
  const previous = select.value;
  const options = [];
  if (withDefault) options.push(h('option', { value: '' }, list.default_version ? `default (v${list.default_version})` : 'default'));
  for (const v of [...list.versions].sort((a, b) => b.version - a.version)) {
    options.push(h('option', { value: String(v.version) }, `v${v.version} · ${v.state}`));
  }
  select.replaceChildren(...options);
  // Keep what the operator picked; otherwise follow the default version as it changes.
  const keep = withDefault || select.dataset.picked === 'yes';
  if (keep && [...select.options].some((o) => o.value === previous)) select.value = previous;
  else if (!withDefault && list.default_version) select.value = String(list.default_version);
}

function predictPanel(name, onAnswer) {
  const version = h('select', { id: 'predict-version', 'aria-label': 'version' });
  const input = h('textarea', { id: 'predict-input', class: 'code', rows: 5, spellcheck: 'false' });
  input.value = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}';
  const output = h('div', { id: 'predict-output', class: 'result' }, h('p', { class: 'muted' }, 'The answer appears here. Ctrl+Enter runs it.'));
  const run = async () => {
    const path = version.value ? `/v1/models/${enc(name)}/versions/${enc(version.value)}/predict` : `/v1/models/${enc(name)}/predict`;
    await busy(go, 'Predicting…', async () => {
      const started = performance.now();
      try {
        const response = await request('POST', path, { body: input.value });
        const ms = performance.now() - started;
        if (!response.ok) {
          output.replaceChildren(errorBox(await readFailure(response)));
          return;
        }
        const answer = await response.json();
        const predictions = Array.isArray(answer.predictions) ? answer.predictions : [];
        output.replaceChildren(
          h(
            'div',
            { class: 'result-meta' },
            badge('ok'),
            h('span', {}, `version ${answer.version}`),
            h('span', { class: 'muted' }, `${predictions.length} row${predictions.length === 1 ? '' : 's'} · ${ms.toFixed(0)} ms`),
          ),
          predictions.length && predictions.length <= 12 ? h('div', { class: 'chips predictions' }, predictions.map((p) => h('span', { class: 'chip chip-prediction' }, typeof p === 'string' ? p : JSON.stringify(p)))) : null,
          h('pre', { class: 'json' }, prettyJson(answer)),
        );
        onAnswer();
      } catch (e) {
        output.replaceChildren(...[errorBox(e)].filter(Boolean));
      }
    });
  };
  const go = button('Predict', run, { kind: 'primary', id: 'predict-run' });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  const element = card(
    'Predict',
    { id: 'predict-card', subtitle: 'POST a JSON body to the model, as a client would.' },
    h('div', { class: 'inline-form' }, field('Version', version), h('div', { class: 'grow' })),
    field('Request body', input, '"instances" (rows), or "records" with feature names; add "drift": {"detector": "adwin"} to check it.'),
    h('div', { class: 'button-row' }, go),
    output,
  );
  return { element, setVersions: (list) => versionOptions(list, version, { withDefault: true }) };
}

function storedPredictionsPanel(name) {
  const version = h('select', { id: 'predictions-version', 'aria-label': 'version' });
  const output = h('div', { id: 'predictions-output' });
  const load = () =>
    fill(output, async () => {
      if (!version.value) return emptyState('No versions', 'Nothing has been deployed yet.');
      let answer;
      try {
        answer = await get(`/v1/models/${enc(name)}/versions/${enc(version.value)}/predictions?limit=20`);
      } catch (e) {
        if (isMissingRoute(e)) return infoBox('Prediction log not available on this server.');
        throw e;
      }
      const rows = answer.predictions || [];
      if (!rows.length) return emptyState('No stored predictions', `Predictions of v${version.value} are listed here once the prediction log records them.`);
      return [
        h('p', { class: 'muted small' }, `${rows.length} most recent of ${answer.total ?? rows.length} stored for v${version.value}.`),
        table(
          [
            { title: 'At', class: 'nowrap', cell: (p) => formatTime(p.at) },
            { title: 'Actor', cell: (p) => p.actor || '—' },
            { title: 'Inputs', cell: (p) => h('code', { class: 'clip', title: JSON.stringify(p.inputs) }, compactJson(p.inputs, 48)) },
            { title: 'Outputs', cell: (p) => h('code', { class: 'clip', title: JSON.stringify(p.outputs) }, compactJson(p.outputs, 48)) },
            { title: 'Latency', class: 'right nowrap', cell: (p) => (Number.isFinite(p.latency_ms) ? `${p.latency_ms.toFixed(1)} ms` : '—') },
            { title: 'Drift', cell: (p) => (p.drift ? badge('drift') : h('span', { class: 'muted' }, '—')) },
          ],
          rows,
          { id: 'predictions-table' },
        ),
      ];
    });
  version.addEventListener('change', () => {
    version.dataset.picked = 'yes';
    load();
  });
  const element = card(
    'Stored predictions',
    { id: 'predictions-card', subtitle: 'The latest predictions recorded for a version.', actions: button('Reload', load, { kind: 'ghost' }) },
    h('div', { class: 'inline-form' }, field('Version', version)),
    output,
  );
  let loaded = false;
  return {
    element,
    reload: () => loaded && load(),
    setVersions: (list) => {
      const before = version.value;
      versionOptions(list, version, { withDefault: false });
      if (!loaded || version.value !== before) {
        loaded = true;
        load();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Drift

const KINDS = [
  ['drift', 'kind-drift', 'drift (detector fired)'],
  ['warning', 'kind-warning', 'warning'],
  ['deviation', 'kind-deviation', 'deviation (mean shift; no rows)'],
];

async function driftPage(content, query) {
  setCrumbs([['Drift']]);
  const { models } = await get('/v1/models');
  content.append(pageHead('Drift', 'Where the data scored drifted from what the model learned from, per feature.'));
  if (!models.length) {
    content.append(card('Drift', {}, emptyState('No models yet', 'Deploy a model with training data to watch its inputs for drift.')));
    return;
  }
  const name = models.some((m) => m.name === query.get('model')) ? query.get('model') : models[0].name;
  const model = models.find((m) => m.name === name);
  const versionFilter = query.get('version') || '';
  const go = (params) => {
    location.hash = `#/drift?${new URLSearchParams(params)}`;
  };
  const modelSelect = h('select', { id: 'drift-model', onchange: () => go({ model: modelSelect.value }) }, models.map((m) => h('option', { value: m.name, selected: m.name === name }, m.name)));
  const versionSelect = h(
    'select',
    { id: 'drift-version', onchange: () => go(versionSelect.value ? { model: name, version: versionSelect.value } : { model: name }) },
    h('option', { value: '' }, 'all versions'),
    [...model.versions].reverse().map((v) => h('option', { value: v.version, selected: String(v.version) === versionFilter }, `v${v.version}`)),
  );
  const body = h('div');
  content.append(
    card('Model', {}, h('div', { class: 'inline-form' }, field('Model', modelSelect), field('Version', versionSelect), h('div', { class: 'grow' }), h('a', { class: 'btn btn-ghost', href: `#/models/${enc(name)}` }, `Open ${name} →`), button('Refresh', render, { id: 'drift-refresh' }))),
    body,
  );
  const params = new URLSearchParams({ limit: '500' });
  if (versionFilter) params.set('version', versionFilter);
  await fill(body, async () => {
    const { events } = await get(`/v1/models/${enc(name)}/drift?${params}`);
    if (!events.length) {
      return card(
        'No drift recorded',
        { id: 'drift-empty' },
        emptyState(
          `No drift events for ${name}${versionFilter ? ` v${versionFilter}` : ''}.`,
          'Drift is checked on predicts of versions deployed with training data or a baseline: per request when the body asks for it ("drift": {"detector": "adwin"}), or on every predict when the version\u2019s drift settings are continuous.',
        ),
      );
    }
    const byFeature = new Map();
    for (const e of events) {
      if (!byFeature.has(e.feature)) byFeature.set(e.feature, []);
      byFeature.get(e.feature).push(e);
    }
    const count = (kind) => events.filter((e) => e.kind === kind).length;
    const stats = h(
      'div',
      { class: 'stats' },
      stat('events', events.length),
      stat('drift', count('drift'), 'kind-drift'),
      // Warnings are not stored by every server; show the count only when there are some.
      count('warning') ? stat('warnings', count('warning'), 'kind-warning') : null,
      stat('deviations', count('deviation'), 'kind-deviation'),
      stat('features', byFeature.size),
    );
    const charts = [...byFeature.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([feature, list]) => {
        const series = KINDS.map(([kind, cls]) => ({
          name: kind,
          cls,
          shape: kind === 'deviation' ? 'diamond' : 'circle',
          line: kind !== 'deviation',
          points: list
            .filter((e) => e.kind === kind)
            .map((e) => ({ t: new Date(e.created_at).getTime(), y: e.rows.length, title: `${formatTime(e.created_at)} · v${e.version} · ${e.detector} ${e.kind}: ${e.rows.length} row${e.rows.length === 1 ? '' : 's'}` })),
        })).filter((s) => s.points.length);
        return card(
          feature,
          { subtitle: `${list.length} event${list.length === 1 ? '' : 's'} · ${list.reduce((n, e) => n + e.rows.length, 0)} drifted rows` },
          // One feature gets the whole width; several share it, two a row.
          timeChart(series, byFeature.size === 1 ? { yLabel: 'drifted rows', width: 1080, height: 260 } : { yLabel: 'drifted rows' }),
          legend(KINDS.filter(([kind]) => list.some((e) => e.kind === kind)).map(([, cls, label]) => [cls, label])),
        );
      });
    const newestFirst = [...events].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    return [
      stats,
      h('div', { class: 'chart-grid', id: 'drift-charts' }, charts),
      card(
        'Events',
        { subtitle: `The latest ${events.length} (at most 500), newest first.` },
        table(
          [
            { title: 'At', class: 'nowrap', cell: (e) => formatTime(e.created_at) },
            { title: 'Version', cell: (e) => `v${e.version}` },
            { title: 'Feature', cell: (e) => h('code', {}, e.feature) },
            { title: 'Kind', cell: (e) => badge(e.kind) },
            { title: 'Detector', cell: (e) => e.detector },
            { title: 'Rows', class: 'right', cell: (e) => String(e.rows.length) },
            { title: 'Row indices', cell: (e) => h('code', { class: 'clip', title: e.rows.join(', ') }, e.rows.length ? compactJson(e.rows, 40) : '—') },
            { title: 'Request', cell: (e) => h('code', { class: 'muted small' }, e.request_id ? e.request_id.slice(0, 12) : '—') },
          ],
          newestFirst,
          { id: 'drift-table' },
        ),
      ),
    ];
  });
}

function stat(label, value, cls) {
  return h('div', { class: ['stat', cls] }, h('div', { class: 'stat-value' }, String(value)), h('div', { class: 'stat-label' }, label));
}

// ---------------------------------------------------------------------------------------------
// Audit trail

const AUDIT_PAGE = 50;

async function auditPage(content, query) {
  setCrumbs([['Audit trail']]);
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const filters = { actor: query.get('actor') || '', model: query.get('model') || '', kind: query.get('kind') || '' };
  const inputs = Object.fromEntries(Object.entries(filters).map(([k, v]) => [k, h('input', { id: `audit-${k}`, name: k, value: v, autocomplete: 'off', placeholder: { actor: 'admin', model: 'iris', kind: 'any' }[k] })]));
  const go = (params) => {
    const clean = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== '' && v !== 0 && v !== '0'));
    location.hash = `#/audit?${new URLSearchParams(clean)}`;
  };
  const params = new URLSearchParams({ limit: String(AUDIT_PAGE), offset: String(offset) });
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);

  const csv = button('Download CSV', (ev) =>
    busy(ev.currentTarget, 'Downloading…', async () => {
      const csvParams = new URLSearchParams({ format: 'csv' });
      for (const [k, v] of Object.entries(filters)) if (v) csvParams.set(k, v);
      try {
        const response = await request('GET', `/v1/audit?${csvParams}`);
        if (!response.ok) throw await readFailure(response);
        const url = URL.createObjectURL(await response.blob());
        const link = h('a', { href: url, download: `maas-audit-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.csv` });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (e) {
        body.prepend(...[errorBox(e)].filter(Boolean));
      }
    }), { id: 'audit-csv' });

  const form = h(
    'form',
    {
      class: 'inline-form',
      id: 'audit-filters',
      onsubmit: (event) => {
        event.preventDefault();
        go({ actor: inputs.actor.value.trim(), model: inputs.model.value.trim(), kind: inputs.kind.value.trim() });
      },
    },
    field('Actor', inputs.actor),
    field('Model', inputs.model),
    field('Kind', inputs.kind),
    h('div', { class: 'button-row' }, h('button', { class: 'btn btn-primary', type: 'submit' }, 'Filter'), button('Clear', () => go({}), { kind: 'ghost' })),
  );
  const body = h('div');
  content.append(pageHead('Audit trail', 'Every change made to this server: who, from where, under which request.', csv), card('Filters', {}, form), body);
  await fill(body, async () => {
    let answer;
    try {
      answer = await get(`/v1/audit?${params}`);
    } catch (e) {
      if (isMissingRoute(e)) return card('Audit trail', { id: 'audit-unavailable' }, infoBox('Audit trail not available on this server.'));
      throw e;
    }
    const events = answer.events || [];
    const total = answer.total ?? events.length;
    const first = events.length ? offset + 1 : 0;
    const last = offset + events.length;
    const pager = h(
      'div',
      { class: 'pager' },
      h('span', { class: 'muted', id: 'audit-range' }, total ? `${first}–${last} of ${total}` : 'no entries'),
      button('← Newer', () => go({ ...filters, offset: Math.max(0, offset - AUDIT_PAGE) }), { kind: 'secondary', id: 'audit-prev' }),
      button('Older →', () => go({ ...filters, offset: offset + AUDIT_PAGE }), { kind: 'secondary', id: 'audit-next' }),
    );
    pager.querySelector('#audit-prev').disabled = offset === 0;
    pager.querySelector('#audit-next').disabled = last >= total;
    return card(
      'Entries',
      { id: 'audit-card', actions: pager },
      table(
        [
          { title: 'At', class: 'nowrap', cell: (e) => formatTime(e.at) },
          { title: 'Actor', cell: (e) => [h('div', {}, h('strong', {}, e.actor || '—')), e.client ? h('div', { class: 'muted small nowrap', title: 'client address' }, e.client) : null] },
          { title: 'Kind', cell: (e) => h('span', { class: 'tag tag-kind' }, e.kind) },
          {
            title: 'Model',
            class: 'nowrap',
            cell: (e) => (e.model ? [h('a', { href: `#/models/${enc(e.model)}` }, e.model), e.version !== null && e.version !== undefined ? h('span', { class: 'muted' }, ` v${e.version}`) : null] : h('span', { class: 'muted' }, '—')),
          },
          { title: 'Request', cell: (e) => h('code', { class: 'muted small', title: e.request_id || '' }, e.request_id ? e.request_id.slice(0, 12) : '—') },
          { title: 'Details', class: 'details-col', cell: (e) => auditDetails(e.details) },
        ],
        events,
        { id: 'audit-table', empty: emptyState('No entries', Object.values(filters).some(Boolean) ? 'Nothing matches these filters.' : 'Changes made to models, versions, users and settings are recorded here.') },
      ),
    );
  });
}

function auditDetails(details) {
  if (details === null || details === undefined || (typeof details === 'object' && !Object.keys(details).length)) return h('span', { class: 'muted' }, '—');
  if (typeof details !== 'object' || Array.isArray(details)) return h('code', { class: 'clip', title: JSON.stringify(details) }, compactJson(details, 60));
  return h(
    'span',
    { class: 'kv-list', title: JSON.stringify(details) },
    Object.entries(details).map(([k, v]) => h('span', { class: 'kv' }, h('span', { class: 'kv-key' }, k), h('span', { class: 'kv-value' }, compactJson(v, 26)))),
  );
}

// ---------------------------------------------------------------------------------------------
// Jobs

// GET /v1/jobs answers {jobs: [{id, name, state, priority, owner, origin, submitted_at,
// started_at, finished_at, duration_secs, …}], total}; GET /v1/jobs/summary the counts.
const jobDuration = (job) => (Number.isFinite(job.duration_secs) ? job.duration_secs : null);
const jobState = (job) => String(job.state || 'unknown');
const jobName = (job) => String(job.name || job.id || '?');

async function jobsPage(content) {
  setCrumbs([['Jobs']]);
  content.append(pageHead('Jobs', 'Training jobs run by the scheduler, with their states and durations.', button('Refresh', render, { id: 'jobs-refresh' })));
  const body = h('div');
  content.append(body);
  await fill(body, async () => {
    let answer;
    let summary;
    try {
      [answer, summary] = await Promise.all([get('/v1/jobs?limit=200'), get('/v1/jobs/summary')]);
    } catch (e) {
      if (isMissingRoute(e)) return card('Jobs', { id: 'jobs-unavailable' }, infoBox('The training scheduler is not available on this server.'));
      throw e;
    }
    const jobs = answer.jobs || [];
    if (!jobs.length) return card('Jobs', {}, emptyState('No jobs yet', 'Submit a workflow (POST /v1/jobs or `maas job submit FILE`); its jobs are listed here.'));
    const counts = Object.entries(summary.states || {}).filter(([, n]) => n > 0);
    const ratio = summary.success_ratio === null || summary.success_ratio === undefined ? '—' : `${Math.round(summary.success_ratio * 100)}%`;
    const timed = jobs.filter((j) => jobDuration(j) !== null).slice(0, 30);
    return [
      h('div', { class: 'stats', id: 'jobs-summary' }, stat('jobs', summary.total), stat('success', ratio), stat('in progress', summary.in_progress),
        stat('mean duration', formatDuration(summary.average_duration_secs)), counts.map(([s, n]) => stat(s, n, `state-${s}`))),
      timed.length
        ? card(
          'Durations',
          { subtitle: `The ${timed.length} most recent jobs with a start time; running jobs are measured up to now.` },
          durationChart(timed.map((j) => ({ label: jobName(j), value: jobDuration(j), cls: `state-${jobState(j)}`, title: `${jobName(j)}: ${jobState(j)}, ${formatDuration(jobDuration(j))}` }))),
        )
        : null,
      card(
        'Jobs',
        {},
        table(
          [
            { title: 'Job', cell: (j) => h('code', { title: j.id }, String(j.id).slice(0, 12)) },
            { title: 'Name', cell: (j) => jobName(j) },
            { title: 'State', cell: (j) => badge(jobState(j)) },
            { title: 'Priority', class: 'muted', cell: (j) => j.priority },
            { title: 'Owner', class: 'muted', cell: (j) => j.owner + (j.model ? ` (${j.origin}: ${j.model})` : '') },
            { title: 'Submitted', class: 'nowrap muted', cell: (j) => formatTime(j.submitted_at) },
            { title: 'Finished', class: 'nowrap muted', cell: (j) => formatTime(j.finished_at) },
            { title: 'Duration', class: 'right nowrap', cell: (j) => formatDuration(jobDuration(j)) },
          ],
          jobs,
          { id: 'jobs-table' },
        ),
      ),
    ];
  });
}

// ---------------------------------------------------------------------------------------------

window.addEventListener('hashchange', render);
render();
