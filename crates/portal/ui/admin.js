// The activity log (who changed what, when), the export of every resource as YAML, and
// the portal's users with their roles (administrators add and delete them).

import { api, h, field, errorBox, showErrors, notice, table, page, download, time, canEdit, session } from './core.js';

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

export async function usersPage() {
  const list = h('div');
  const refresh = async () => {
    const { items } = await api('GET', '/api/v1/users');
    list.replaceChildren(table('Users', ['Name', 'Role', ''], items.map((u) => [u.name, u.role,
      !canEdit() || u.name === session.user ? '' : h('button', {
        type: 'button', class: 'danger', 'aria-label': `Delete user ${u.name}`, onclick: async () => {
          if (!confirm(`Delete user ${u.name}?`)) return;
          try { await api('DELETE', `/api/v1/users/${encodeURIComponent(u.name)}`); notice('User deleted.'); refresh(); } catch (e) { alert(e.message); }
        },
      }, 'Delete')])));
  };
  await refresh();
  if (!canEdit()) return page('Users', h('p', { class: 'hint' }, 'You have the viewer role: you can look at every page but not change anything.'), list);
  const user = field('New user name', { name: 'user', required: true });
  const pass = field('Their password', { name: 'password', type: 'password', required: true, hint: 'At least 8 characters.' });
  pass.control.setAttribute('autocomplete', 'new-password');
  const role = field('Role', { name: 'role', value: 'viewer', options: [['viewer', 'viewer (read-only)'], ['admin', 'admin (may change everything)']] });
  const box = errorBox();
  const form = h('form', { class: 'card', 'aria-label': 'New user' }, h('h2', {}, 'New user'), box, h('div', { class: 'grid' }, user, pass, role),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add user')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/api/v1/users', { user: user.control.value.trim(), password: pass.control.value, role: role.control.value });
      notice(`User ${user.control.value.trim()} added.`);
      user.control.value = ''; pass.control.value = '';
      refresh();
    } catch (e) { showErrors(form, box, e); }
  });
  return page('Users', list, form);
}
