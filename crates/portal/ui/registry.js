// Devices and assets: lists with live status, guided forms, CSV import/export of data
// points, rejected certificates to trust, and each data point's last value, live.

import {
  api, h, field, errorBox, showErrors, notice, table, badge, page, every, stream, parseCsv, toCsv, download, time,
} from './core.js';

const DEVICE_API = 'namespaces.deviceregistry.microsoft.com/v1';
const MAX_CSV_ROWS = 1000;
const NODE_ID = /^(ns=\d+;|nsu=[^;]+;)?[sigb]=.+$/;

function origin(m) {
  const o = m.status?.origin || {};
  return o.source === 'config' ? `config file ${o.file || ''}` : 'portal / API';
}

// ---------------------------------------------------------------- devices

function deviceForm(existing, done) {
  const spec = existing?.spec || {};
  const [epName, ep] = Object.entries(spec.endpoints?.inbound || { 'opc-ua': {} })[0];
  let extra = {};
  try { extra = JSON.parse(ep.additionalConfiguration || '{}'); } catch (_) { extra = {}; }
  const f = {
    name: field('Name', { name: 'metadata.name', value: existing?.metadata.name || '', required: true, hint: 'Lowercase letters, digits and dashes.' }),
    endpoint: field('Endpoint name', { name: 'endpoint', value: epName }),
    address: field('Server address', { name: `spec.endpoints.inbound.${epName}.address`, value: ep.address || '', placeholder: 'opc.tcp://host:4840', required: true }),
    auth: field('Authentication', { name: 'auth', value: ep.authentication?.method || 'Anonymous', options: ['Anonymous', 'UsernamePassword', 'Certificate'] }),
    secret: field('Credentials secret', { name: 'secret', value: ep.authentication?.usernamePasswordCredentials?.usernameSecretName || '', hint: 'For UsernamePassword: a Secret with username and password.' }),
    mode: field('Security mode', { name: 'mode', value: extra.security?.securityMode || 'None', options: ['None', 'Sign', 'SignAndEncrypt'] }),
    policy: field('Security policy', { name: 'policy', value: (extra.security?.securityPolicy || 'None').replace(/^.*#/, ''), options: ['None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss'] }),
    accept: field('Trust the server’s certificate automatically', { name: 'accept', type: 'checkbox', value: !!extra.security?.autoAcceptUntrustedServerCertificates }),
  };
  if (existing) f.name.control.readOnly = true;
  const box = errorBox();
  const form = h('form', { class: 'card', 'aria-label': existing ? 'Edit device' : 'New device' },
    h('h2', {}, existing ? `Edit ${existing.metadata.name}` : 'New device'), box,
    h('div', { class: 'grid' }, Object.values(f)),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, existing ? 'Save device' : 'Create device'),
      existing ? h('button', { type: 'button', onclick: () => done(false) }, 'Cancel') : null));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = f.name.control.value.trim();
    const endpoint = { endpointType: 'Microsoft.OpcUa', address: f.address.control.value.trim(), authentication: { method: f.auth.control.value } };
    if (f.auth.control.value === 'UsernamePassword') {
      const s = f.secret.control.value.trim();
      endpoint.authentication.usernamePasswordCredentials = { usernameSecretName: s, passwordSecretName: s };
    }
    const security = { securityMode: f.mode.control.value };
    if (f.policy.control.value !== 'None') security.securityPolicy = f.policy.control.value;
    if (f.accept.control.checked) security.autoAcceptUntrustedServerCertificates = true;
    endpoint.additionalConfiguration = JSON.stringify({ security });
    const manifest = {
      apiVersion: existing?.apiVersion || DEVICE_API, kind: 'Device', metadata: { name },
      spec: { ...spec, endpoints: { ...(spec.endpoints || {}), inbound: { [f.endpoint.control.value.trim() || 'opc-ua']: endpoint } } },
    };
    try {
      if (existing) await api('PUT', `/api/v1/devices/${encodeURIComponent(name)}`, manifest);
      else await api('POST', '/api/v1/devices', manifest);
      notice(`Device ${name} saved.`);
      done(true);
    } catch (e) { showErrors(form, box, e); }
  });
  return form;
}

export async function devicesPage() {
  const list = h('div', { 'aria-live': 'polite' });
  const certs = h('div');
  const formSlot = h('div');
  const showForm = (existing) => {
    formSlot.replaceChildren(deviceForm(existing, async (changed) => {
      showForm(null);
      if (changed) await refresh();
    }));
    if (existing) formSlot.querySelector('input:not([readonly])')?.focus();
  };
  async function refresh() {
    const { items } = await api('GET', '/api/v1/devices');
    const rows = await Promise.all(items.map(async (d) => {
      const st = await api('GET', `/api/v1/devices/${encodeURIComponent(d.metadata.name)}/status`).catch(() => ({}));
      const eps = Object.entries(st.endpoints || {});
      const state = eps.length ? eps.map(([n, e]) => h('span', {}, `${n}: `, badge(e.state), e.lastError ? h('span', { class: 'hint' }, ` ${e.lastError}`) : null)) : badge('unknown');
      const address = Object.values(d.spec.endpoints?.inbound || {}).map((e) => e.address).join(', ');
      const editable = d.status?.origin?.source !== 'config';
      return [d.metadata.name, address, h('span', { 'data-status': d.metadata.name }, state), origin(d),
        editable ? h('span', { class: 'row-actions' },
          h('button', { type: 'button', onclick: () => showForm(d) }, 'Edit'),
          h('button', {
            type: 'button', class: 'danger', onclick: async () => {
              if (!confirm(`Delete device ${d.metadata.name}?`)) return;
              try { await api('DELETE', `/api/v1/devices/${encodeURIComponent(d.metadata.name)}`); notice('Device deleted.'); refresh(); } catch (e) { alert(e.message); }
            },
          }, 'Delete')) : 'read-only'];
    }));
    list.replaceChildren(table('Devices', ['Name', 'Address', 'Status', 'Origin', 'Actions'], rows, { empty: 'No devices yet: create one below.' }));
    const rejected = await api('GET', '/api/v1/certificates/rejected').catch(() => ({ items: [] }));
    certs.replaceChildren(h('h2', {}, 'Rejected server certificates'),
      table('Rejected certificates', ['Thumbprint', 'Common name', 'Action'], rejected.items.map((c) => [c.thumbprint, c.commonName || '', h('button', {
        type: 'button', onclick: async () => {
          try { await api('POST', `/api/v1/certificates/rejected/${encodeURIComponent(c.thumbprint)}/trust`); notice('Certificate trusted; the connector retries.'); refresh(); } catch (e) { alert(e.message); }
        },
      }, 'Trust')]), { empty: 'None: the connector has not rejected any server certificate.' }));
  }
  await refresh();
  // Redraw only while the keyboard is elsewhere, so a focused button is not replaced.
  every(3000, () => { if (!list.contains(document.activeElement) && !certs.contains(document.activeElement)) refresh().catch(() => {}); });
  showForm(null);
  return page('Devices', list, formSlot, certs);
}

// ---------------------------------------------------------------- assets

function pointRow(p = {}) {
  let cfg = {};
  try { cfg = JSON.parse(p.dataPointConfiguration || '{}'); } catch (_) { cfg = {}; }
  return { name: p.name || '', dataSource: p.dataSource || '', samplingInterval: cfg.samplingInterval ?? '' };
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
    else { seen.add(name); points.push({ name, dataSource: source, samplingInterval: sampling }); }
  });
  return { points, errors };
}

function pointsEditor(points) {
  const body = h('tbody');
  const draw = () => body.replaceChildren(...points.map((p, i) => {
    const input = (k, label) => h('input', { value: p[k], 'aria-label': `${label} of data point ${i + 1}`, oninput: (e) => { p[k] = e.target.value; } });
    return h('tr', {}, h('td', {}, input('name', 'Name')), h('td', {}, input('dataSource', 'Node id')), h('td', {}, input('samplingInterval', 'Sampling interval')),
      h('td', {}, h('button', { type: 'button', class: 'danger', 'aria-label': `Remove data point ${i + 1}`, onclick: () => { points.splice(i, 1); draw(); } }, 'Remove')));
  }));
  draw();
  const csv = field('Import data points from CSV', { name: 'csv', type: 'textarea', rows: 4, hint: 'Header: name,dataSource,samplingInterval — up to 1,000 rows; paste or choose a file.', placeholder: 'name,dataSource,samplingInterval\ntemperature,ns=2;s=Fast.Sine.0,500' });
  const file = h('input', { type: 'file', accept: '.csv,text/csv', 'aria-label': 'CSV file of data points', onchange: async (e) => { csv.control.value = await e.target.files[0].text(); } });
  const report = h('div', { class: 'csv-report', 'aria-live': 'polite' });
  const importCsv = () => {
    const { points: got, errors } = pointsFromCsv(csv.control.value);
    points.splice(0, points.length, ...got);
    draw();
    report.replaceChildren(h('p', {}, `Imported ${got.length} data point${got.length === 1 ? '' : 's'}.`),
      errors.length ? h('ul', { class: 'error', role: 'alert' }, errors.map((e) => h('li', {}, e))) : '');
  };
  return h('fieldset', {}, h('legend', {}, 'Data points'),
    h('div', { class: 'table-wrap' }, h('table', {}, h('caption', {}, 'Data points of the dataset'),
      h('thead', {}, h('tr', {}, ['Name', 'Node id (dataSource)', 'Sampling (ms)', ''].map((x) => h('th', { scope: 'col' }, x)))), body)),
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => { points.push(pointRow()); draw(); body.querySelector('tr:last-child input')?.focus(); } }, 'Add data point'),
      h('button', { type: 'button', onclick: () => download('data-points.csv', 'text/csv', toCsv([['name', 'dataSource', 'samplingInterval'], ...points.map((p) => [p.name, p.dataSource, p.samplingInterval])])) }, 'Export CSV')),
    csv, file, h('div', { class: 'actions' }, h('button', { type: 'button', onclick: importCsv }, 'Import CSV')), report);
}

async function assetForm(existing) {
  const spec = existing?.spec || {};
  const { items: devices } = await api('GET', '/api/v1/devices');
  const ds = spec.datasets?.[0] || { name: 'telemetry', dataPoints: [] };
  let defaults = {};
  try { defaults = JSON.parse(spec.defaultDatasetsConfiguration || '{}'); } catch (_) { defaults = {}; }
  const points = (ds.dataPoints || []).map(pointRow);
  const deviceNames = devices.map((d) => d.metadata.name);
  const f = {
    name: field('Name', { name: 'metadata.name', value: existing?.metadata.name || '', required: true }),
    device: field('Device', { name: 'spec.deviceRef.deviceName', value: spec.deviceRef?.deviceName || deviceNames[0] || '', options: deviceNames.length ? deviceNames : [['', 'create a device first']] }),
    endpoint: field('Endpoint', { name: 'spec.deviceRef.endpointName', value: spec.deviceRef?.endpointName || 'opc-ua' }),
    description: field('Description', { name: 'spec.description', value: spec.description || '' }),
    sampling: field('Default sampling interval (ms)', { name: 'spec.defaultDatasetsConfiguration', type: 'number', value: defaults.samplingInterval ?? 500 }),
    publishing: field('Default publishing interval (ms)', { name: 'publishing', type: 'number', value: defaults.publishingInterval ?? 1000 }),
    dataset: field('Dataset name', { name: 'spec.datasets[0].name', value: ds.name }),
    topic: field('Destination topic', { name: 'topic', value: ds.destinations?.[0]?.configuration?.topic || '', hint: 'Empty: azure-iot-operations/data/<asset name>.' }),
  };
  const group = spec.eventGroups?.[0] || { name: 'events', events: [] };
  const events = field('Events', {
    name: 'spec.eventGroups[0].events', type: 'textarea', rows: 3,
    value: (group.events || []).map((e) => `${e.name}, ${e.dataSource}`).join('\n'),
    hint: 'One per line: name, event notifier node id (e.g. alarms, nsu=…;s=Special.Events). Empty: no events.',
  });
  if (existing) f.name.control.readOnly = true;
  const box = errorBox();
  const form = h('form', { class: 'card', 'aria-label': existing ? 'Edit asset' : 'New asset' },
    h('h2', {}, existing ? `Edit ${existing.metadata.name}` : 'New asset'), box,
    h('fieldset', {}, h('legend', {}, '1. Details'), h('div', { class: 'grid' }, f.name, f.device, f.endpoint, f.description)),
    h('fieldset', {}, h('legend', {}, '2. Default sampling'), h('div', { class: 'grid' }, f.sampling, f.publishing)),
    h('fieldset', {}, h('legend', {}, '3. Dataset'), h('div', { class: 'grid' }, f.dataset, f.topic), pointsEditor(points)),
    h('fieldset', {}, h('legend', {}, '4. Events'), events),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, existing ? 'Save asset' : 'Create asset')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = f.name.control.value.trim();
    const dataset = {
      ...ds,
      name: f.dataset.control.value.trim() || 'telemetry',
      dataPoints: points.filter((p) => p.name || p.dataSource).map((p) => {
        const o = { name: p.name.trim(), dataSource: p.dataSource.trim() };
        if (String(p.samplingInterval).trim()) o.dataPointConfiguration = JSON.stringify({ samplingInterval: Number(p.samplingInterval) });
        return o;
      }),
    };
    const topic = f.topic.control.value.trim();
    if (topic) dataset.destinations = [{ target: 'Mqtt', configuration: { topic } }];
    else delete dataset.destinations;
    const manifest = {
      apiVersion: existing?.apiVersion || DEVICE_API, kind: 'Asset', metadata: { name },
      spec: {
        ...spec,
        deviceRef: { deviceName: f.device.control.value, endpointName: f.endpoint.control.value.trim() },
        defaultDatasetsConfiguration: JSON.stringify({ samplingInterval: Number(f.sampling.control.value || 0), publishingInterval: Number(f.publishing.control.value || 0) }),
        datasets: [dataset, ...(spec.datasets || []).slice(1)],
      },
    };
    if (f.description.control.value.trim()) manifest.spec.description = f.description.control.value.trim();
    const eventList = events.control.value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
      const at = l.indexOf(',');
      return at < 0 ? { name: l, dataSource: '' } : { name: l.slice(0, at).trim(), dataSource: l.slice(at + 1).trim() };
    });
    if (eventList.length) manifest.spec.eventGroups = [{ ...group, events: eventList }, ...(spec.eventGroups || []).slice(1)];
    else if (spec.eventGroups?.length > 1) manifest.spec.eventGroups = spec.eventGroups.slice(1);
    else delete manifest.spec.eventGroups;
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
  return page('Assets', table('Assets', ['Name', 'Device', 'Data points', 'Status', 'Messages', 'Origin'], rows, { empty: 'No assets yet: create one below.' }), await assetForm(null));
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
  const editable = asset.status?.origin?.source !== 'config';
  const actions = h('div', { class: 'actions' }, h('a', { href: '#/assets' }, '← All assets'),
    editable ? h('button', {
      type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Delete asset ${name}?`)) return;
        try { await api('DELETE', `/api/v1/assets/${encodeURIComponent(name)}`); location.hash = '#/assets'; } catch (e) { alert(e.message); }
      },
    }, 'Delete asset') : h('span', { class: 'hint' }, `read-only: ${origin(asset)}`));
  return page(`Asset ${name}`, actions, status, ...sections, editable ? await assetForm(asset) : null);
}
