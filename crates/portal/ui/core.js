// Shared pieces of the portal: the REST client (session cookie + CSRF header), element
// building, forms with labelled fields and per-field errors, a YAML writer, CSV, and live
// topic streams (Server-Sent Events). Every page gets its data from /api/v1/ only.

export const session = { user: null, role: null, csrf: null };

/** Whether the signed-in user may change things (viewers only look; the API refuses them). */
export function canEdit() { return session.role === 'admin'; }

export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.map((e) => (e.field ? `${e.field}: ` : '') + e.message).join('\n') || `HTTP ${status}`);
    this.status = status;
    this.errors = errors;
  }
}

/** One API call; resolves to the parsed JSON (or text), rejects with ApiError. */
export async function api(method, path, body, { text = false } = {}) {
  const headers = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = session.csrf || '';
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      payload = body;
      headers['Content-Type'] = 'text/plain';
    } else {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
  }
  const resp = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  const raw = await resp.text();
  if (resp.status === 401 && !path.startsWith('/api/v1/session') && !path.startsWith('/api/v1/login')) {
    session.user = null;
    location.hash = '#/signin';
  }
  if (!resp.ok) {
    let errors = [{ field: '', message: raw.trim() || resp.statusText }];
    try {
      const j = JSON.parse(raw);
      if (Array.isArray(j.errors)) errors = j.errors;
    } catch (_) { /* not JSON: keep the text */ }
    throw new ApiError(resp.status, errors);
  }
  if (text) return raw;
  return raw.trim() ? JSON.parse(raw) : null;
}

/** h('p', {class: 'x', onclick: f}, 'text', child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
/** A labelled input; returns the wrapper, the control is `.control`. */
export function field(label, { type = 'text', name, value = '', options, hint, required, rows, placeholder } = {}) {
  const id = `f${++uid}`;
  let control;
  if (options) {
    control = h('select', { id, name }, options.map((o) => {
      const [v, l] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, l);
    }));
  } else if (type === 'textarea') {
    control = h('textarea', { id, name, rows: rows || 6, placeholder, spellcheck: 'false' });
    control.value = value;
  } else if (type === 'checkbox') {
    control = h('input', { id, name, type, checked: !!value });
  } else {
    control = h('input', { id, name, type, value, required, placeholder, autocomplete: type === 'password' ? 'current-password' : 'off' });
  }
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  const err = h('p', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' });
  const wrap = h('div', { class: `field ${type === 'checkbox' ? 'check' : ''}`, 'data-field': name || '' },
    h('label', { for: id }, label), control, hint ? h('p', { class: 'hint', id: hintId }, hint) : null, err);
  wrap.control = control;
  return wrap;
}

/** Show an API error: field errors next to their fields, the rest in `box`. */
export function showErrors(form, box, error) {
  form?.querySelectorAll('.field-error').forEach((e) => { e.textContent = ''; });
  form?.querySelectorAll('[aria-invalid]').forEach((e) => e.removeAttribute('aria-invalid'));
  const rest = [];
  for (const e of error.errors || [{ field: '', message: String(error.message || error) }]) {
    const target = e.field && form?.querySelector(`[data-field="${CSS.escape(e.field)}"]`);
    if (target) {
      target.querySelector('.field-error').textContent = e.message;
      target.control?.setAttribute('aria-invalid', 'true');
    } else rest.push((e.field ? `${e.field}: ` : '') + e.message);
  }
  box.textContent = rest.join('\n');
  box.hidden = rest.length === 0;
  if (rest.length) box.focus();
}

export function errorBox() {
  return h('div', { class: 'error', role: 'alert', tabindex: '-1', hidden: true });
}

export function notice(text) {
  const n = document.getElementById('notice');
  n.textContent = text;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.textContent = ''; }, 4000);
}

export function table(caption, headers, rows, { empty = 'Nothing yet.' } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c) : h('td', {}, c))))))));
}

export function badge(state) {
  const s = String(state || 'unknown');
  const tone = /^(connected|available|ok|enabled)$/i.test(s) ? 'good'
    : /^(disabled|starting|unknown|connecting)$/i.test(s) ? 'neutral' : 'bad';
  return h('span', { class: `badge ${tone}` }, s);
}

export function page(title, ...children) {
  document.title = `${title} · Edgeplane`;
  return [h('h1', {}, title), ...children.filter((c) => c !== null && c !== undefined && c !== false)];
}

// --- cleanups when leaving a page (timers, streams) ---
const cleanups = [];
export function onLeave(fn) { cleanups.push(fn); }
export function leave() { while (cleanups.length) { try { cleanups.pop()(); } catch (_) { /* already gone */ } } }
export function every(ms, fn) {
  const t = setInterval(fn, ms);
  onLeave(() => clearInterval(t));
}

/** Stream messages of a topic filter; closed when the page is left. */
export function stream(filter, onMessage, onState) {
  const es = new EventSource(`/api/v1/topics/stream?filter=${encodeURIComponent(filter)}`);
  es.addEventListener('message', (e) => {
    try { onMessage(JSON.parse(e.data)); } catch (_) { /* malformed event: skip */ }
  });
  es.onopen = () => onState?.('open');
  es.onerror = () => onState?.(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  onLeave(() => es.close());
  return es;
}

// --- YAML (block style; strings quoted when they could be read otherwise) ---
function yamlString(s) {
  const plain = /^[A-Za-z_][A-Za-z0-9_.\/-]*$/.test(s) && !/^(true|false|null|yes|no|on|off|y|n)$/i.test(s);
  return plain ? s : JSON.stringify(s);
}
function yamlScalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return yamlString(v);
  if (Array.isArray(v)) return '[]';
  if (typeof v === 'object') return '{}';
  return String(v);
}
function isBlock(v) {
  return v && typeof v === 'object' && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
}
function yamlMap(o, ind) {
  return Object.entries(o).map(([k, v]) => {
    const pad = ' '.repeat(ind);
    if (!isBlock(v)) return `${pad}${yamlString(k)}: ${yamlScalar(v)}\n`;
    if (Array.isArray(v)) return `${pad}${yamlString(k)}:\n${yamlSeq(v, ind)}`;
    return `${pad}${yamlString(k)}:\n${yamlMap(v, ind + 2)}`;
  }).join('');
}
function yamlSeq(a, ind) {
  const pad = ' '.repeat(ind);
  return a.map((v) => {
    if (!isBlock(v)) return `${pad}- ${yamlScalar(v)}\n`;
    if (Array.isArray(v)) return `${pad}-\n${yamlSeq(v, ind + 2)}`;
    return `${pad}- ${yamlMap(v, ind + 2).trimStart()}`;
  }).join('');
}
export function toYaml(v) {
  if (Array.isArray(v)) return isBlock(v) ? yamlSeq(v, 0) : '[]\n';
  return isBlock(v) ? yamlMap(v, 0) : `${yamlScalar(v)}\n`;
}

// --- CSV (RFC 4180: quotes, doubled quotes, commas and newlines inside quotes) ---
export function parseCsv(text) {
  const rows = [];
  let row = [''];
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { row[row.length - 1] += '"'; i += 2; continue; }
      if (c === '"') { quoted = false; i++; continue; }
      row[row.length - 1] += c; i++; continue;
    }
    if (c === '"') quoted = true;
    else if (c === ',') row.push('');
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      rows.push(row); row = [''];
    } else row[row.length - 1] += c;
    i++;
  }
  if (row.length > 1 || row[0] !== '') rows.push(row);
  return rows.filter((r) => r.some((c) => c.trim() !== ''));
}
export function toCsv(rows) {
  return rows.map((r) => r.map((c) => {
    const s = String(c ?? '');
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }).join(',')).join('\n') + '\n';
}

export function download(name, type, text) {
  const a = h('a', { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

export function time(t) {
  if (!t) return '';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}
