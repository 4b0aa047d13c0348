// Dataflows: the list with health and message counts, enable/disable, and the editor: a
// form and a YAML view kept in sync (the form writes YAML; edited YAML is parsed by
// POST /api/v1/parse and fills the form), plus the "try it" panel (POST .../dry-run).

import { api, h, field, errorBox, showErrors, notice, table, badge, page, every, toYaml, canEdit } from './core.js';

const FLOW_API = 'connectivity.iotoperations.azure.com/v1';

function blank() {
  return {
    apiVersion: FLOW_API, kind: 'Dataflow', metadata: { name: '' },
    spec: {
      mode: 'Enabled',
      operations: [
        { operationType: 'Source', sourceSettings: { endpointRef: 'default', dataSources: [''] } },
        { operationType: 'BuiltInTransformation', builtInTransformationSettings: { map: [{ inputs: ['*'], output: '*' }] } },
        { operationType: 'Destination', destinationSettings: { endpointRef: 'default', dataDestination: '' } },
      ],
    },
  };
}

const op = (m, type) => (m.spec.operations || []).find((o) => o.operationType === type);

export async function flowsPage() {
  const list = h('div', { 'aria-live': 'polite' });
  async function refresh() {
    const { items } = await api('GET', '/api/v1/dataflows');
    const rows = items.map((f) => {
      const name = f.metadata.name;
      const st = f.status || {};
      const m = st.messages || {};
      const portal = st.origin?.source === 'portal';
      const enabled = st.mode !== 'Disabled';
      return [h('a', { href: `#/dataflows/${encodeURIComponent(name)}` }, name), badge(st.health), st.problem || '',
        `${m.received ?? 0} in / ${m.sent ?? 0} out`, `${(m.filtered ?? 0) + (m.unroutable ?? 0) + (m.failed ?? 0)} dropped`,
        portal && canEdit() ? h('span', { class: 'row-actions' },
          h('button', {
            type: 'button', onclick: async () => {
              try { await api('POST', `/api/v1/dataflows/${encodeURIComponent(name)}/${enabled ? 'disable' : 'enable'}`); notice(`${name} ${enabled ? 'disabled' : 'enabled'}; applied within 5 s.`); refresh(); } catch (e) { alert(e.message); }
            },
          }, enabled ? 'Disable' : 'Enable'),
          h('button', {
            type: 'button', class: 'danger', onclick: async () => {
              if (!confirm(`Delete dataflow ${name}?`)) return;
              try { await api('DELETE', `/api/v1/dataflows/${encodeURIComponent(name)}`); refresh(); } catch (e) { alert(e.message); }
            },
          }, 'Delete'))
          : h('span', { class: 'hint' }, portal ? 'read-only: viewer' : `read-only (${st.origin?.file || 'config'})`)];
    });
    list.replaceChildren(table('Dataflows', ['Name', 'Health', 'Problem', 'Messages', 'Dropped', 'Actions'], rows, { empty: 'No dataflows yet.' }));
  }
  await refresh();
  // Redraw only while the keyboard is elsewhere, so a focused button is not replaced.
  every(3000, () => { if (!list.contains(document.activeElement)) refresh().catch(() => {}); });
  return page('Dataflows', canEdit() ? h('p', {}, h('a', { href: '#/dataflows/new', class: 'button primary' }, 'New dataflow')) : null, list);
}

export async function flowPage(name) {
  const isNew = name === 'new';
  let manifest = isNew ? blank() : await api('GET', `/api/v1/dataflows/${encodeURIComponent(name)}`);
  delete manifest.status;
  const readOnly = !isNew && (await api('GET', '/api/v1/dataflows').then((r) => r.items.find((f) => f.metadata.name === name)?.status?.origin?.source !== 'portal'));

  const f = {
    name: field('Name', { name: 'metadata.name', required: true, hint: 'Lowercase letters, digits and dashes.' }),
    sources: field('Source topics', { name: 'spec.operations[0].sourceSettings.dataSources', hint: 'Topic filters, separated by commas.' }),
    map: field('Map rules', { name: 'map', type: 'textarea', rows: 4, hint: 'One per line: output = expression ; inputs. Example: tempF = $1 * 9 / 5 + 32 ; temperature. Use * = * to copy everything.' }),
    filter: field('Filter (drop when true)', { name: 'filter', hint: 'Optional: expression ; inputs, e.g. $1 > 500 ; temperature' }),
    dest: field('Destination topic', { name: 'spec.operations[2].destinationSettings.dataDestination', hint: 'May use ${inputTopic.2} etc.' }),
    mode: field('Mode', { name: 'spec.mode', options: ['Enabled', 'Disabled'] }),
  };
  const yaml = field('YAML', { name: 'yaml', type: 'textarea', rows: 18, hint: 'Edit the manifest here or in the form; each follows the other.' });
  const yamlErr = h('p', { class: 'field-error', 'aria-live': 'polite' });

  const ruleText = (r) => {
    const ins = (r.inputs || []).join(', ');
    if (!r.expression) return `${r.output} = ${ins}`;
    return `${r.output} = ${r.expression} ; ${ins}`;
  };
  function toForm() {
    f.name.control.value = manifest.metadata?.name || '';
    f.sources.control.value = (op(manifest, 'Source')?.sourceSettings?.dataSources || []).join(', ');
    const t = op(manifest, 'BuiltInTransformation')?.builtInTransformationSettings || {};
    f.map.control.value = (t.map || []).map(ruleText).join('\n');
    const fl = (t.filter || [])[0];
    f.filter.control.value = fl ? `${fl.expression} ; ${(fl.inputs || []).join(', ')}` : '';
    f.dest.control.value = op(manifest, 'Destination')?.destinationSettings?.dataDestination || '';
    f.mode.control.value = manifest.spec?.mode || 'Enabled';
  }
  function fromForm() {
    const m = structuredClone(manifest);
    m.metadata = { ...(m.metadata || {}), name: f.name.control.value.trim() };
    m.spec = m.spec || {};
    m.spec.mode = f.mode.control.value;
    m.spec.operations = m.spec.operations || [];
    const ensure = (type, key) => {
      let o = op(m, type);
      if (!o) { o = { operationType: type, [key]: {} }; m.spec.operations.push(o); }
      return o[key];
    };
    const src = ensure('Source', 'sourceSettings');
    src.endpointRef = src.endpointRef || 'default';
    src.dataSources = f.sources.control.value.split(',').map((s) => s.trim()).filter(Boolean);
    const rules = f.map.control.value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
      const [out, rest = ''] = l.split(/=(.*)/s).map((s) => s.trim());
      const [expr, ins] = rest.includes(';') ? rest.split(/;(.*)/s).map((s) => s.trim()) : ['', rest];
      const r = { inputs: ins.split(',').map((s) => s.trim()).filter(Boolean), output: out };
      if (expr) r.expression = expr;
      return r;
    });
    const filterText = f.filter.control.value.trim();
    if (rules.length || filterText) {
      const t = ensure('BuiltInTransformation', 'builtInTransformationSettings');
      t.map = rules;
      if (filterText) {
        const [expr, ins = ''] = filterText.split(/;(.*)/s).map((s) => s.trim());
        t.filter = [{ inputs: ins.split(',').map((s) => s.trim()).filter(Boolean), expression: expr }];
      } else delete t.filter;
    } else m.spec.operations = m.spec.operations.filter((o) => o.operationType !== 'BuiltInTransformation');
    const dst = ensure('Destination', 'destinationSettings');
    dst.endpointRef = dst.endpointRef || 'default';
    dst.dataDestination = f.dest.control.value.trim();
    // Keep the operations in the order the runtime expects.
    const order = { Source: 0, BuiltInTransformation: 1, Destination: 2 };
    m.spec.operations.sort((a, b) => (order[a.operationType] ?? 1) - (order[b.operationType] ?? 1));
    manifest = m;
    yaml.control.value = toYaml(manifest);
    yamlErr.textContent = '';
  }
  toForm();
  yaml.control.value = toYaml(manifest);
  if (isNew) f.sources.control.value = '';
  if (!isNew) f.name.control.readOnly = true;

  let timer;
  yaml.control.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const r = await api('POST', '/api/v1/parse', yaml.control.value);
        manifest = r.manifest;
        toForm();
        yamlErr.textContent = '';
      } catch (e) { yamlErr.textContent = e.message; }
    }, 400);
  });

  const box = errorBox();
  const form = h('form', { class: 'card', 'aria-label': 'Dataflow' }, box,
    h('div', { class: 'split' },
      h('fieldset', {}, h('legend', {}, 'Form'), Object.values(f)),
      h('fieldset', {}, h('legend', {}, 'YAML'), yaml, yamlErr)),
    !canEdit() ? h('p', { class: 'hint' }, 'You have the viewer role: you can try this dataflow but not save it.')
      : readOnly ? h('p', { class: 'hint' }, 'This dataflow comes from a configuration file: edit it there.')
      : h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, isNew ? 'Create dataflow' : 'Save dataflow')));
  form.addEventListener('input', (ev) => { if (ev.target !== yaml.control) fromForm(); });
  form.addEventListener('change', (ev) => { if (ev.target !== yaml.control) fromForm(); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fromForm();
    const n = manifest.metadata.name;
    try {
      if (isNew) await api('POST', '/api/v1/dataflows', manifest);
      else await api('PUT', `/api/v1/dataflows/${encodeURIComponent(n)}`, manifest);
      notice(`Dataflow ${n} saved; it starts within 5 s.`);
      location.hash = '#/dataflows';
    } catch (e) { showErrors(form, box, e); }
  });

  const samples = field('Sample messages', { name: 'samples', type: 'textarea', rows: 4, value: '{"temperature": 21.5}', hint: 'One JSON per line: a payload, or {"topic", "payload", "userProperties"}.' });
  const topic = field('Topic of samples', { name: 'topic', value: 'sample' });
  const results = h('ol', { class: 'results', 'aria-live': 'polite' });
  const tryBox = errorBox();
  const tryForm = h('form', { class: 'card', 'aria-labelledby': 'try-title' }, h('h2', { id: 'try-title' }, 'Try it'), tryBox, samples, topic,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Run dry run')), h('h3', {}, 'Results'), results);
  tryForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fromForm();
    try {
      const r = await api('POST', '/api/v1/dataflows/dry-run', { manifest, samples: samples.control.value, topic: topic.control.value });
      results.replaceChildren(...r.results.map((x) => h('li', {}, h('code', {}, x))));
      tryBox.hidden = true;
    } catch (e) { showErrors(null, tryBox, e); }
  });
  return page(isNew ? 'New dataflow' : `Dataflow ${name}`, h('p', {}, h('a', { href: '#/dataflows' }, '← All dataflows')), form, tryForm);
}

