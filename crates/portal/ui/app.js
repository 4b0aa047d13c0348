// The portal's entry: hash routing (#/devices, #/assets/oven, …), the session check, and
// the sign-in / first-run set-up page. Pages live in their own modules.

import { api, session, h, field, errorBox, showErrors, leave, page } from './core.js';
import { devicesPage } from './registry.js';
import { assetsPage, assetPage } from './assets.js';
import { flowsPage, flowPage } from './flows.js';
import { brokerPage } from './broker.js';
import { activityPage, exportPage, usersPage } from './admin.js';

const routes = [
  [/^\/devices$/, devicesPage],
  [/^\/assets$/, assetsPage],
  [/^\/assets\/(.+)$/, assetPage],
  [/^\/dataflows$/, flowsPage],
  [/^\/dataflows\/(.+)$/, flowPage],
  [/^\/broker$/, brokerPage],
  [/^\/activity$/, activityPage],
  [/^\/export$/, exportPage],
  [/^\/users$/, usersPage],
];

const main = document.getElementById('main');

async function signInPage() {
  let setup = false;
  try {
    await api('GET', '/api/v1/session');
  } catch (e) {
    setup = e.status === 401 && (await fetch('/api/v1/session').then((r) => r.json()).catch(() => ({}))).setupRequired;
  }
  const user = field('User name', { name: 'user', required: true, value: setup ? 'admin' : '' });
  const pass = field('Password', { name: 'password', type: 'password', required: true, hint: setup ? 'At least 8 characters.' : undefined });
  if (setup) pass.control.setAttribute('autocomplete', 'new-password');
  const box = errorBox();
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, setup ? 'Set up Edgeplane' : 'Sign in'),
    setup ? h('p', {}, 'No user exists yet. Choose the administrator’s name and password.') : null,
    box, user, pass,
    h('button', { type: 'submit', class: 'primary' }, setup ? 'Create administrator' : 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('POST', setup ? '/api/v1/setup' : '/api/v1/login', { user: user.control.value, password: pass.control.value });
      session.user = r.user;
      session.role = r.role;
      session.csrf = r.csrf;
      if (location.hash === '#/devices') render(); else location.hash = '#/devices';
    } catch (e) { showErrors(form, box, e); }
  });
  document.title = `${setup ? 'Set up' : 'Sign in'} · Edgeplane`;
  main.replaceChildren(form);
  user.control.focus();
}

async function ensureSession() {
  if (session.user) return true;
  try {
    const s = await api('GET', '/api/v1/session');
    session.user = s.user;
    session.role = s.role;
    session.csrf = s.csrf;
    return true;
  } catch (_) { return false; }
}

async function render() {
  leave();
  const path = (location.hash || '#/devices').slice(1) || '/devices';
  const signedIn = path !== '/signin' && await ensureSession();
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('who').hidden = !signedIn;
  if (!signedIn) return signInPage();
  document.getElementById('user').textContent = `${session.user} (${session.role})`;
  document.querySelectorAll('#nav a').forEach((a) => {
    const current = path.startsWith(a.getAttribute('href').slice(1));
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  const found = routes.find(([re]) => re.test(path));
  if (!found) { location.hash = '#/devices'; return; }
  const [re, fn] = found;
  const args = path.match(re).slice(1).map(decodeURIComponent);
  main.replaceChildren(...page('Loading…'));
  try {
    const content = await fn(...args);
    main.replaceChildren(...content);
  } catch (e) {
    main.replaceChildren(...page('Something went wrong', h('p', { class: 'error', role: 'alert' }, String(e.message || e))));
  }
  main.focus({ preventScroll: true });
}

document.getElementById('signout').addEventListener('click', async () => {
  try { await api('POST', '/api/v1/logout'); } catch (_) { /* signed out anyway */ }
  session.user = null;
  location.hash = '#/signin';
});
window.addEventListener('hashchange', render);
render();
