// The broker page: counters, message rates over time (an SVG chart drawn here), the
// connected clients, retained messages, the live topic explorer (Server-Sent Events) and the state store browser.

import { api, h, field, errorBox, showErrors, notice, table, page, every, stream, time, canEdit } from './core.js';

const MAX_SHOWN = 200;

function chart(history) {
  const W = 600; const H = 160; const P = 30;
  const svg = (tag, attrs, ...kids) => {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    el.append(...kids);
    return el;
  };
  const max = Math.max(1, ...history.flatMap((s) => [s.receivedPerSecond, s.sentPerSecond]));
  const x = (i) => P + (i * (W - 2 * P)) / Math.max(1, history.length - 1);
  const y = (v) => H - P + 0 - ((H - 2 * P) * v) / max;
  const line = (key, cls) => svg('polyline', { class: cls, fill: 'none', points: history.map((s, i) => `${x(i).toFixed(1)},${y(s[key]).toFixed(1)}`).join(' ') });
  const last = history[history.length - 1] || { receivedPerSecond: 0, sentPerSecond: 0 };
  const label = `Messages per second over the last ${Math.round(history.length * 2 / 60) || 1} minutes: now ${last.receivedPerSecond.toFixed(1)} received, ${last.sentPerSecond.toFixed(1)} sent; peak ${max.toFixed(1)}.`;
  return h('figure', { class: 'chart' },
    svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label },
      svg('line', { x1: P, y1: H - P, x2: W - P, y2: H - P, class: 'axis' }),
      svg('line', { x1: P, y1: P, x2: P, y2: H - P, class: 'axis' }),
      svg('text', { x: 2, y: P + 4, class: 'tick' }, max.toFixed(0)),
      svg('text', { x: 2, y: H - P, class: 'tick' }, '0'),
      line('receivedPerSecond', 'rx'), line('sentPerSecond', 'tx')),
    h('figcaption', {}, h('span', { class: 'key rx' }, 'received/s'), ' ', h('span', { class: 'key tx' }, 'sent/s'), ' — ', label));
}

function counters(c) {
  const items = [['Clients connected', c.clientsConnected], ['Clients (max)', c.clientsMaximum], ['Messages received', c.messagesReceived],
    ['Messages sent', c.messagesSent], ['Subscriptions', c.subscriptions], ['Retained', c.retained], ['Queued', c.queuedMessages],
    ['Dropped (queue full)', c.droppedQueueFull], ['Uptime', `${Math.floor(c.uptimeSeconds / 60)} min`],
    ...Object.entries(c.connectionsAcceptedByVersion || {}).map(([v, n]) => [`Connections accepted, MQTT ${v}`, n])];
  return h('dl', { class: 'stats' }, items.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, String(v)))));
}

function clients() {
  const out = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    try {
      const r = await api('GET', '/api/v1/broker/clients');
      const note = `${r.total} clients connected${r.total > r.items.length ? `, first ${r.items.length} by client id shown` : ''}${r.complete ? '' : ' (a router partition did not answer: the list is partial)'}.`;
      out.replaceChildren(h('p', { class: 'hint' }, note),
        table('Connected clients', ['Client id', 'User name', 'MQTT', 'Listener', 'Remote address', 'Connected since', 'Subscriptions', 'Queued messages'],
          r.items.map((c) => [c.clientId, c.username ?? '', c.protocolVersion, c.listener, c.remoteAddress, time(c.connectedSinceMs),
            String(c.subscriptions), String(c.queuedMessages)]), { empty: 'No clients connected.' }));
    } catch (e) { out.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message)); }
  };
  load();
  return h('section', { 'aria-labelledby': 'clients-title' }, h('h2', { id: 'clients-title' }, 'Connected clients'),
    h('button', { type: 'button', onclick: load }, 'Refresh'), out);
}

function explorer() {
  const filter = field('Topic filter', { name: 'filter', value: '#', hint: '+ matches one level, # the rest.' });
  const list = h('ol', { class: 'messages', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const state = h('p', { class: 'hint' }, 'Not subscribed.');
  let es = null;
  let count = 0;
  const stop = () => { es?.close(); es = null; state.textContent = `Stopped after ${count} messages.`; };
  const form = h('form', { class: 'inline', 'aria-label': 'Topic explorer' }, filter,
    h('button', { type: 'submit', class: 'primary' }, 'Subscribe'), h('button', { type: 'button', onclick: stop }, 'Stop'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    es?.close();
    list.replaceChildren();
    count = 0;
    const f = filter.control.value.trim() || '#';
    es = stream(f, (m) => {
      count += 1;
      const skipped = m.skipped ? h('span', { class: 'hint' }, ` (${m.skipped} skipped)`) : null;
      list.prepend(h('li', {}, h('span', { class: 'topic' }, m.topic), ' ', h('time', {}, time(m.time)), m.retain ? ' retained' : '', skipped,
        h('pre', {}, m.payload + (m.truncated ? ' …' : ''))));
      while (list.children.length > MAX_SHOWN) list.lastChild.remove();
      state.textContent = `Subscribed to ${f}: ${count} messages.`;
    }, (s) => { if (s === 'open') state.textContent = `Subscribed to ${f}: waiting for messages.`; });
  });
  return h('section', { 'aria-labelledby': 'explorer-title' }, h('h2', { id: 'explorer-title' }, 'Topic explorer'), form, state, list);
}

function retained() {
  const filter = field('Retained messages matching', { name: 'retained', value: '#' });
  const out = h('div');
  const form = h('form', { class: 'inline', 'aria-label': 'Retained messages' }, filter, h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('GET', `/api/v1/broker/retained?filter=${encodeURIComponent(filter.control.value || '#')}`);
      out.replaceChildren(table('Retained messages', ['Topic', 'Payload', 'QoS'], r.items.map((m) => [m.topic, h('code', {}, m.payload.slice(0, 200)), String(m.qos)]), { empty: 'No retained messages match.' }));
    } catch (e) { out.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message)); }
  });
  return h('section', { 'aria-labelledby': 'retained-title' }, h('h2', { id: 'retained-title' }, 'Retained messages'), form, out);
}

function stateStore() {
  const pattern = field('Keys matching', { name: 'pattern', value: '*' });
  const out = h('div');
  const load = async () => {
    try {
      const r = await api('GET', `/api/v1/state?pattern=${encodeURIComponent(pattern.control.value || '*')}`);
      out.replaceChildren(h('p', { class: 'hint' }, `${r.total} keys${r.total > r.items.length ? `, first ${r.items.length} shown` : ''}.`),
        table('State store keys', ['Key', 'Value', 'Version', ''], r.items.map((k) => [k.key, h('code', {}, k.value.slice(0, 200)), k.version,
          !canEdit() ? '' : h('button', { type: 'button', class: 'danger', onclick: async () => { try { await api('DELETE', `/api/v1/state/${encodeURIComponent(k.key)}`); load(); } catch (e) { alert(e.message); } } }, 'Delete')]), { empty: 'No keys match.' }));
    } catch (e) { out.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message)); }
  };
  const find = h('form', { class: 'inline', 'aria-label': 'Find state store keys' }, pattern, h('button', { type: 'submit' }, 'List'));
  find.addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  const key = field('Key', { name: 'key', required: true });
  const value = field('Value', { name: 'value' });
  const box = errorBox();
  const set = h('form', { class: 'inline', 'aria-label': 'Set a state store key' }, box, key, value, h('button', { type: 'submit' }, 'Set key'));
  set.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await api('PUT', `/api/v1/state/${encodeURIComponent(key.control.value)}`, value.control.value); notice('Key set.'); load(); } catch (e) { showErrors(set, box, e); }
  });
  load();
  return h('section', { 'aria-labelledby': 'state-title' }, h('h2', { id: 'state-title' }, 'State store'), find, out, canEdit() ? set : null);
}

export async function brokerPage() {
  const top = h('div', { 'aria-live': 'off' });
  const refresh = async () => {
    const b = await api('GET', '/api/v1/broker');
    top.replaceChildren(counters(b.counters), chart(b.history));
  };
  await refresh();
  every(2000, () => refresh().catch(() => {}));
  return page('Broker', h('p', { class: 'hint' }, 'Counts and rates since the broker started.'), top, clients(), explorer(), retained(), stateStore());
}
