// Devices: the list with each endpoint's live status, the form, and rejected server
// certificates to trust. Assets are in assets.js.

import { api, h, field, errorBox, showErrors, notice, table, badge, page, every, canEdit } from './core.js';

export const DEVICE_API = 'namespaces.deviceregistry.microsoft.com/v1';

export function origin(m) {
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
        editable && canEdit() ? h('span', { class: 'row-actions' },
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
      table('Rejected certificates', ['Thumbprint', 'Common name', 'Action'], rejected.items.map((c) => [c.thumbprint, c.commonName || '', !canEdit() ? 'an administrator can trust it' : h('button', {
        type: 'button', onclick: async () => {
          try { await api('POST', `/api/v1/certificates/rejected/${encodeURIComponent(c.thumbprint)}/trust`); notice('Certificate trusted; the connector retries.'); refresh(); } catch (e) { alert(e.message); }
        },
      }, 'Trust')]), { empty: 'None: the connector has not rejected any server certificate.' }));
  }
  await refresh();
  // Redraw only while the keyboard is elsewhere, so a focused button is not replaced.
  every(3000, () => { if (!list.contains(document.activeElement) && !certs.contains(document.activeElement)) refresh().catch(() => {}); });
  if (canEdit()) showForm(null);
  return page('Devices', list, formSlot, certs);
}
