// The activity log (who changed what, when) and the export of every resource as YAML.

import { api, h, table, page, download, time } from './core.js';

export async function activityPage() {
  const { items } = await api('GET', '/api/v1/activity');
  return page('Activity', table('Changes, newest first', ['When', 'Who', 'What', 'Resource'],
    items.map((e) => [time(e.time), e.user, e.action, e.resource]), { empty: 'No changes recorded yet.' }));
}

export async function exportPage() {
  const text = await api('GET', '/api/v1/export', undefined, { text: true });
  const pre = h('pre', { class: 'export', tabindex: '0', 'aria-label': 'Exported resources' }, text);
  return page('Export',
    h('p', {}, 'Every device, asset and dataflow as YAML manifests, ready for a configuration folder.'),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', onclick: () => download('edgeplane-export.yaml', 'application/yaml', text) }, 'Download YAML'),
      h('a', { href: '/api/v1/export', download: 'edgeplane-export.yaml' }, 'Direct link')),
    pre);
}
