/*
 * The console's entry point: the login, the navigation and the router. Pages live in
 * the URL hash (#/dashboard, #/volumes, #/volumes/NAME, #/vms, #/vms/NAME[/TAB],
 * #/exports, #/tasks, #/events), so reload and back work. A page module exports mount(root, param) → {onEvent?,
 * dispose?}; the app hands each live event to the mounted page, which refreshes what
 * the event touches.
 *
 * Sign-in: the token is checked with GET /api/v1/pools before it is kept in
 * sessionStorage (gone when the tab closes). A 401 later (token revoked) signs out with
 * a message. Failures nothing else caught still end up in the alert banner.
 */
import { api, onUnauthorized, request, session } from './api.js';
import * as dashboard from './dashboard.js';
import * as eventsPage from './events.js';
import * as exportsPage from './exports.js';
import { feed } from './feed.js';
import { io } from './io.js';
import * as tasksPage from './tasks.js';
import { clearError, h, showError } from './ui.js';
import * as vmPage from './vm.js';
import * as vmsPage from './vms.js';
import * as volumePage from './volume.js';
import * as volumesPage from './volumes.js';

const pages = {
  dashboard: { title: 'Dashboard', mount: dashboard.mount },
  volumes: { title: 'Volumes', mount: volumesPage.mount },
  vms: { title: 'VMs', mount: vmsPage.mount },
  exports: { title: 'Exports', mount: exportsPage.mount },
  tasks: { title: 'Tasks', mount: tasksPage.mount },
  events: { title: 'Events', mount: eventsPage.mount },
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logoutButton = document.getElementById('logout');
const liveStatus = document.getElementById('live');
let current = null;
let signedIn = false;

function unmount() {
  try {
    current?.dispose?.();
  } catch (error) {
    showError(error, 'Leaving the page');
  }
  current = null;
  main.replaceChildren();
}

function route() {
  const [, section = 'dashboard', ...rest] = location.hash.replace(/^#/, '').split('/');
  if (section === 'volumes' && rest.length > 0) return { key: 'volumes', title: decodeURIComponent(rest.join('/')), mount: (root) => volumePage.mount(root, decodeURIComponent(rest.join('/'))) };
  // VM names hold no "/" (naming rules): #/vms/NAME/TAB.
  if (section === 'vms' && rest.length > 0 && rest[0]) {
    const name = decodeURIComponent(rest[0]);
    return { key: 'vms', title: name, mount: (root) => vmPage.mount(root, name, rest[1]) };
  }
  const page = pages[section];
  return page ? { key: section, ...page } : null;
}

function show() {
  if (!signedIn) return;
  unmount();
  clearError();
  const page = route();
  if (!page) {
    location.hash = '#/dashboard';
    return;
  }
  for (const link of nav.querySelectorAll('a')) link.toggleAttribute('aria-current', link.dataset.page === page.key);
  document.title = `${page.title} · Strata`;
  try {
    current = page.mount(main) ?? null;
  } catch (error) {
    showError(error, `Showing ${page.title}`);
  }
}

function enter() {
  signedIn = true;
  nav.hidden = false;
  logoutButton.hidden = false;
  feed.start();
  io.start();
  show();
}

function leave(message) {
  if (!signedIn) return;
  signedIn = false;
  unmount();
  feed.stop();
  io.stop();
  session.clear();
  nav.hidden = true;
  logoutButton.hidden = true;
  liveStatus.textContent = '';
  showLogin();
  if (message) showError(message);
}

function showLogin() {
  document.title = 'Sign in · Strata';
  const token = h('input', { type: 'password', name: 'token', required: true, autocomplete: 'off', 'data-test': 'login-token', id: 'login-token' });
  const submit = h('button', { class: 'primary', 'data-test': 'login-submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'login', 'aria-label': 'Sign in', 'data-test': 'login' },
    h('h1', {}, 'Sign in to Strata'),
    h('label', { for: 'login-token' }, 'API token'),
    token,
    submit,
    h('p', { class: 'hint' }, 'The first admin token is in ', h('code', {}, 'admin.token'), ' in the daemon’s data directory; ', h('code', {}, 'strata token create NAME'), ' makes more.'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    submit.disabled = true;
    const secret = token.value.trim();
    try {
      await request('GET', '/api/v1/pools', undefined, { token: secret });
      session.set(secret);
      unmount();
      enter();
    } catch (error) {
      showError(error, 'Signing in');
      token.select();
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(form);
  token.focus();
}

async function boot() {
  api.get('/api/v1/health', { token: null }).then(
    (health) => (document.getElementById('version').textContent = `v${health.version}`),
    () => undefined,
  );
  onUnauthorized(() => leave({ code: 'STRATA_E_UNAUTHORIZED', message: 'The session ended: the token is no longer valid. Sign in again.' }));
  logoutButton.addEventListener('click', () => leave(null));
  window.addEventListener('hashchange', show);
  feed.subscribe(({ status, event }) => {
    liveStatus.textContent = status === 'live' ? '● live' : status === 'stopped' ? '' : `○ ${status}`;
    liveStatus.className = status;
    if (event) current?.onEvent?.(event);
  });
  if (!session.token) {
    showLogin();
    return;
  }
  try {
    await request('GET', '/api/v1/pools', undefined, { token: session.token });
    enter();
  } catch (error) {
    session.clear();
    showLogin();
    showError(error, 'Signing in');
  }
}

window.addEventListener('error', (event) => showError(event.error ?? event.message, 'The console'));
window.addEventListener('unhandledrejection', (event) => showError(event.reason, 'The console'));
void boot();
