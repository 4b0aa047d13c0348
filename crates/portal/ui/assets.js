// Assets: the list, the guided form (details, default sampling, any number of datasets
// with their data points, any number of event groups with their events; rows added and
// removed in place, data points imported and exported as CSV), and each data point's last
// value, live. Fields the form does not show are kept as they were when an asset is saved.

import {
  api, h, field, errorBox, showErrors, notice, table, badge, page, every, stream, parseCsv, toCsv, download, time, canEdit,
} from './core.js';
import { DEVICE_API, origin } from './registry.js';

const MAX_CSV_ROWS = 1000;
const NODE_ID = /^(ns=\d+;|nsu=[^;]+;)?[sigb]=.+$/;

function pointRow(p = {}) {
  let cfg = {};
  try { cfg = JSON.parse(p.dataPointConfiguration || '{}'); } catch (_) { cfg = {}; }
  return { base: p, name: p.name || '', dataSource: p.dataSource || '', samplingInterval: cfg.samplingInterval ?? '' };
}

/** CSV text to data point rows; every problem names its row (1 = the first data row). */
export function pointsFromCsv(text) {
  const rows = parseCsv(text);
  const errors = [];
  if (!rows.length) return { points: [], errors: ['the CSV is empty'] };
  const head = rows[0].map((c) => c.trim());
  const col = (n) => head.findIndex((c) => c.toLowerCase() === n.toLowerCase());
  const [iName, iSource, iSampling] = [col('name'), col('dataSource'), col('samplingInterval')];
  if (iName < 0 || iSource < 0) return { points: [], errors: ['the header must name the columns name and dataSource (and optionally samplingInterval)'] };
  const body = rows.slice(1);
  if (body.length > MAX_CSV_ROWS) errors.push(`at most ${MAX_CSV_ROWS} rows can be imported; this file has ${body.length}`);
  const seen = new Set();
  const points = [];
  body.slice(0, MAX_CSV_ROWS).forEach((r, i) => {
    const n = i + 1;
    const name = (r[iName] || '').trim();
    const source = (r[iSource] || '').trim();
    const sampling = iSampling >= 0 ? (r[iSampling] || '').trim() : '';
    const bad = [];
    if (!name) bad.push('name is empty');
    else if (seen.has(name)) bad.push(`name ${name} is used by an earlier row`);
    if (!NODE_ID.test(source)) bad.push(`dataSource "${source}" is not a node id (write ns=2;s=Name)`);
    if (sampling && !/^\d+$/.test(sampling)) bad.push(`samplingInterval "${sampling}" is not a whole number of milliseconds`);
    if (bad.length) errors.push(`row ${n}: ${bad.join('; ')}`);
    else { seen.add(name); points.push(pointRow({ name, dataSource: source, dataPointConfiguration: sampling ? JSON.stringify({ samplingInterval: Number(sampling) }) : undefined })); }
  });
  return { points, errors };
}

/**
 * An editable table of `rows` (objects, changed in place): one text input per column
 * ([key, header, label]), a Remove button per row and an Add button. `what` names a row
 * for screen readers ("data point 2 in dataset 1").
 */
function rowsTable(rows, columns, { caption, what, add, blank }) {
  const body = h('tbody');
  const draw = () => body.replaceChildren(...rows.map((r, i) => h('tr', {},
    columns.map(([k, , label]) => h('td', {}, h('input', { value: r[k], 'aria-label': `${label} of ${what(i + 1)}`, oninput: (e) => { r[k] = e.target.value; } }))),
    h('td', {}, h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${what(i + 1)}`, onclick: () => { rows.splice(i, 1); draw(); } }, 'Remove')))));
  draw();
  const addButton = h('button', { type: 'button', onclick: () => { rows.push(blank()); draw(); body.querySelector('tr:last-child input')?.focus(); } }, add);
  const el = h('div', { class: 'table-wrap' }, h('table', {}, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, [...columns.map(([, head]) => head), ''].map((x) => h('th', { scope: 'col' }, x)))), body));
  return { el, addButton, draw };
}

function pointsEditor(points, n) {
  const t = rowsTable(points, [['name', 'Name', 'Name'], ['dataSource', 'Node id (dataSource)', 'Node id'], ['samplingInterval', 'Sampling (ms)', 'Sampling interval']], {
    caption: `Data points of dataset ${n}`, what: (i) => `data point ${i} in dataset ${n}`, add: 'Add data point', blank: () => pointRow(),
  });
  const csv = field('Import data points from CSV', { name: `csv${n}`, type: 'textarea', rows: 4, hint: 'Header: name,dataSource,samplingInterval — up to 1,000 rows; paste or choose a file.', placeholder: 'name,dataSource,samplingInterval\ntemperature,ns=2;s=Fast.Sine.0,500' });
  const file = h('input', { type: 'file', accept: '.csv,text/csv', 'aria-label': `CSV file of data points for dataset ${n}`, onchange: async (e) => { csv.control.value = await e.target.files[0].text(); } });
  const report = h('div', { class: 'csv-report', 'aria-live': 'polite' });
  const importCsv = () => {
    const { points: got, errors } = pointsFromCsv(csv.control.value);
    points.splice(0, points.length, ...got);
    t.draw();
    report.replaceChildren(h('p', {}, `Imported ${got.length} data point${got.length === 1 ? '' : 's'}.`),
      errors.length ? h('ul', { class: 'error', role: 'alert' }, errors.map((e) => h('li', {}, e))) : '');
  };
  const exportCsv = () => download('data-points.csv', 'text/csv', toCsv([['name', 'dataSource', 'samplingInterval'], ...points.map((p) => [p.name, p.dataSource, p.samplingInterval])]));
  return h('div', {}, t.el, h('div', { class: 'actions' }, t.addButton, h('button', { type: 'button', onclick: exportCsv }, 'Export CSV')),
    csv, file, h('div', { class: 'actions' }, h('button', { type: 'button', onclick: importCsv }, 'Import CSV')), report);
}

/** A repeated group of the form (datasets, event groups): one fieldset per item. */
function repeated(items, { noun, add, blank, render }) {
  const slot = h('div');
  const draw = () => slot.replaceChildren(...items.map((item, i) => h('fieldset', { class: 'item' },
    h('legend', {}, `${noun} ${i + 1}`), render(item, i),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: () => { items.splice(i, 1); draw(); } }, `Remove ${noun.toLowerCase()} ${i + 1}`)))));
  draw();
  const addButton = h('button', { type: 'button', onclick: () => { items.push(blank(items.length)); draw(); slot.querySelector('fieldset:last-child input')?.focus(); } }, add);
  return h('div', {}, slot, h('div', { class: 'actions' }, addButton));
}

/** A text field bound to `obj[key]`. */
function bound(obj, key, label, opts) {
  const f = field(label, { ...opts, value: obj[key] });
  f.control.addEventListener('input', () => { obj[key] = f.control.value; });
  return f;
}

const topicOf = (dests) => dests?.[0]?.configuration?.topic || '';
function withTopic(base, key, topic) {
  const o = { ...base };
  if (topic.trim()) o[key] = [{ target: 'Mqtt', configuration: { ...(base[key]?.[0]?.configuration || {}), topic: topic.trim() } }];
  else delete o[key];
  return o;
}

async function assetForm(existing) {
  const spec = existing?.spec || {};
  const { items: devices } = await api('GET', '/api/v1/devices');
  let defaults = {};
  try { defaults = JSON.parse(spec.defaultDatasetsConfiguration || '{}'); } catch (_) { defaults = {}; }
  const datasets = (spec.datasets?.length ? spec.datasets : [{ name: 'telemetry', dataPoints: [] }]).map((ds) => ({
    base: ds, name: ds.name, topic: topicOf(ds.destinations), points: (ds.dataPoints || []).map(pointRow),
  }));
  const groups = (spec.eventGroups || []).map((g) => ({
    base: g, name: g.name, topic: topicOf(g.defaultDestinations), events: (g.events || []).map((e) => ({ base: e, name: e.name, dataSource: e.dataSource })),
  }));
  const deviceNames = devices.map((d) => d.metadata.name);
  const f = {
    name: field('Name', { name: 'metadata.name', value: existing?.metadata.name || '', required: true }),
    device: field('Device', { name: 'spec.deviceRef.deviceName', value: spec.deviceRef?.deviceName || deviceNames[0] || '', options: deviceNames.length ? deviceNames : [['', 'create a device first']] }),
    endpoint: field('Endpoint', { name: 'spec.deviceRef.endpointName', value: spec.deviceRef?.endpointName || 'opc-ua' }),
    description: field('Description', { name: 'spec.description', value: spec.description || '' }),
    sampling: field('Default sampling interval (ms)', { name: 'spec.defaultDatasetsConfiguration', type: 'number', value: defaults.samplingInterval ?? 500 }),
    publishing: field('Default publishing interval (ms)', { name: 'publishing', type: 'number', value: defaults.publishingInterval ?? 1000 }),
  };
  const datasetsEl = repeated(datasets, {
    noun: 'Dataset', add: 'Add dataset',
    blank: (i) => ({ base: {}, name: `dataset-${i + 1}`, topic: '', points: [pointRow()] }),
    render: (ds, i) => h('div', {}, h('div', { class: 'grid' },
      bound(ds, 'name', 'Dataset name', { name: `spec.datasets[${i}].name` }),
      bound(ds, 'topic', 'Destination topic', { name: `spec.datasets[${i}].destinations`, hint: 'Empty: azure-iot-operations/data/<asset name>.' })),
    pointsEditor(ds.points, i + 1)),
  });
  const eventsEl = repeated(groups, {
    noun: 'Event group', add: 'Add event group',
    blank: (i) => ({ base: {}, name: i ? `events-${i + 1}` : 'events', topic: '', events: [{ base: {}, name: '', dataSource: '' }] }),
    render: (g, i) => {
      const t = rowsTable(g.events, [['name', 'Name', 'Name'], ['dataSource', 'Event notifier node id', 'Notifier']], {
        caption: `Events of event group ${i + 1}`, what: (n) => `event ${n} in event group ${i + 1}`, add: 'Add event', blank: () => ({ base: {}, name: '', dataSource: '' }),
      });
      return h('div', {}, h('div', { class: 'grid' },
        bound(g, 'name', 'Event group name', { name: `spec.eventGroups[${i}].name` }),
        bound(g, 'topic', 'Events topic', { name: `spec.eventGroups[${i}].defaultDestinations`, hint: 'Empty: the asset’s default.' })),
      t.el, h('p', { class: 'hint' }, 'A notifier is an object that emits events, e.g. nsu=…;s=Special.Events.'), h('div', { class: 'actions' }, t.addButton));
    },
  });
  if (existing) f.name.control.readOnly = true;
  const box = errorBox();
  const form = h('form', { class: 'card', 'aria-label': existing ? 'Edit asset' : 'New asset' },
    h('h2', {}, existing ? `Edit ${existing.metadata.name}` : 'New asset'), box,
    h('fieldset', {}, h('legend', {}, '1. Details'), h('div', { class: 'grid' }, f.name, f.device, f.endpoint, f.description)),
    h('fieldset', {}, h('legend', {}, '2. Default sampling'), h('div', { class: 'grid' }, f.sampling, f.publishing)),
    h('fieldset', {}, h('legend', {}, '3. Datasets'), datasetsEl),
    h('fieldset', {}, h('legend', {}, '4. Events'), eventsEl),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, existing ? 'Save asset' : 'Create asset')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = f.name.control.value.trim();
    const manifest = {
      apiVersion: existing?.apiVersion || DEVICE_API, kind: 'Asset', metadata: { name },
      spec: {
        ...spec,
        deviceRef: { deviceName: f.device.control.value, endpointName: f.endpoint.control.value.trim() },
        defaultDatasetsConfiguration: JSON.stringify({ samplingInterval: Number(f.sampling.control.value || 0), publishingInterval: Number(f.publishing.control.value || 0) }),
        datasets: datasets.map((ds, i) => withTopic({
          ...ds.base,
          name: ds.name.trim() || `dataset-${i + 1}`,
          dataPoints: ds.points.filter((p) => p.name || p.dataSource).map((p) => {
            const o = { ...p.base, name: p.name.trim(), dataSource: p.dataSource.trim() };
            if (String(p.samplingInterval).trim()) o.dataPointConfiguration = JSON.stringify({ samplingInterval: Number(p.samplingInterval) });
            else delete o.dataPointConfiguration;
            return o;
          }),
        }, 'destinations', ds.topic)),
        eventGroups: groups.map((g, i) => withTopic({
          ...g.base,
          name: g.name.trim() || `events-${i + 1}`,
          events: g.events.filter((e) => e.name || e.dataSource).map((e) => ({ ...e.base, name: e.name.trim(), dataSource: e.dataSource.trim() })),
        }, 'defaultDestinations', g.topic)),
      },
    };
    if (!manifest.spec.eventGroups.length) delete manifest.spec.eventGroups;
    if (f.description.control.value.trim()) manifest.spec.description = f.description.control.value.trim();
    else delete manifest.spec.description;
    try {
      if (existing) await api('PUT', `/api/v1/assets/${encodeURIComponent(name)}`, manifest);
      else await api('POST', '/api/v1/assets', manifest);
      notice(`Asset ${name} saved.`);
      location.hash = `#/assets/${encodeURIComponent(name)}`;
    } catch (e) { showErrors(form, box, e); }
  });
  return form;
}

export async function assetsPage() {
  const { items } = await api('GET', '/api/v1/assets');
  const rows = await Promise.all(items.map(async (a) => {
    const st = await api('GET', `/api/v1/assets/${encodeURIComponent(a.metadata.name)}/status`).catch(() => ({}));
    const n = (a.spec.datasets || []).reduce((s, d) => s + (d.dataPoints || []).length, 0);
    return [h('a', { href: `#/assets/${encodeURIComponent(a.metadata.name)}` }, a.metadata.name), a.spec.deviceRef?.deviceName || '', String(n), badge(st.state), String(st.messagesPublished ?? 0), origin(a)];
  }));
  return page('Assets', table('Assets', ['Name', 'Device', 'Data points', 'Status', 'Messages', 'Origin'], rows, { empty: canEdit() ? 'No assets yet: create one below.' : 'No assets yet.' }),
    canEdit() ? await assetForm(null) : null);
}

export async function assetPage(name) {
  const asset = await api('GET', `/api/v1/assets/${encodeURIComponent(name)}`);
  const status = h('p', { 'aria-live': 'polite' });
  const refresh = async () => {
    const st = await api('GET', `/api/v1/assets/${encodeURIComponent(name)}/status`).catch(() => ({}));
    status.replaceChildren('Status: ', badge(st.state), ` · messages published: ${st.messagesPublished ?? 0}`, st.lastError ? ` · ${st.lastError}` : '');
  };
  await refresh();
  every(3000, () => refresh().catch(() => {}));
  const ns = asset.metadata.namespace || 'azure-iot-operations';
  const sections = (asset.spec.datasets || []).map((ds) => {
    const cells = {};
    const rows = (ds.dataPoints || []).map((p) => {
      cells[p.name] = { value: h('td', { 'data-point-value': p.name }, '—'), time: h('td', { 'data-point-time': p.name }, '—') };
      return h('tr', {}, h('th', { scope: 'row' }, p.name), h('td', {}, p.dataSource), cells[p.name].value, cells[p.name].time);
    });
    const topic = ds.destinations?.[0]?.configuration?.topic || `${ns}/data/${name}`;
    const live = h('span', { class: 'hint' }, 'connecting…');
    stream(topic, (m) => {
      let body;
      try { body = JSON.parse(m.payload); } catch (_) { return; }
      for (const [k, v] of Object.entries(body || {})) {
        if (!cells[k]) continue;
        const value = v && typeof v === 'object' && 'Value' in v ? v.Value : v;
        cells[k].value.textContent = typeof value === 'object' ? JSON.stringify(value) : String(value);
        cells[k].time.textContent = time(v?.SourceTimestamp || m.time);
      }
    }, (s) => { live.textContent = s === 'open' ? `live from ${topic}` : s; });
    return h('section', { 'aria-labelledby': `ds-${ds.name}` }, h('h2', { id: `ds-${ds.name}` }, `Dataset ${ds.name}`), live,
      h('div', { class: 'table-wrap' }, h('table', {}, h('caption', {}, `Last values of ${ds.name}`),
        h('thead', {}, h('tr', {}, ['Data point', 'Node id', 'Last value', 'Timestamp'].map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows))));
  });
  const editable = asset.status?.origin?.source !== 'config' && canEdit();
  const actions = h('div', { class: 'actions' }, h('a', { href: '#/assets' }, '← All assets'),
    editable ? h('button', {
      type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Delete asset ${name}?`)) return;
        try { await api('DELETE', `/api/v1/assets/${encodeURIComponent(name)}`); location.hash = '#/assets'; } catch (e) { alert(e.message); }
      },
    }, 'Delete asset') : h('span', { class: 'hint' }, canEdit() ? `read-only: ${origin(asset)}` : 'read-only: viewer'));
  return page(`Asset ${name}`, actions, status, ...sections, editable ? await assetForm(asset) : null);
}
