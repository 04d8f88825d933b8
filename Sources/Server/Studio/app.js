// The Studio's shell: who is signed in, the navigation, and which screen the address shows.
// Screens are modules with `render(main, ctx)`; each talks only to the API (api.js).

import { api, ApiError, setCSRF } from './api.js';
import { h, replace } from './dom.js';

const screens = {
  flows: () => import('./flows.js'),
  builder: () => import('./builder.js'),
  inbox: () => import('./inbox.js'),
  conversations: () => import('./conversations.js'),
  channels: () => import('./channels.js'),
  members: () => import('./members.js'),
  signin: () => import('./signin.js'),
};

/** Pages anyone may open: signing in and following a mailed link. */
const publicPages = new Set(['signin', 'setup', 'invitation', 'password', 'signup']);

const root = document.getElementById('app');
let person = null;
let leaveScreen = null;

/** Goes to `path` in the Studio without reloading. */
export function navigate(path) {
  if (path !== location.pathname + location.search + location.hash) history.pushState({}, '', path);
  show();
}

/** The signed-in person (`GET /v1/session`), or null. */
export async function loadSession() {
  try {
    person = await api('GET', '/v1/session');
    setCSRF(person.csrf_token);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    person = null;
    setCSRF(null);
  }
  return person;
}

function route() {
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const page = parts[0] || 'flows';
  if (page === 'flows' && parts[1]) return { screen: 'builder', page, args: { name: parts[1] } };
  if (page === 'conversations' && parts[1]) return { screen: 'conversations', page, args: { id: parts[1] } };
  if (publicPages.has(page)) return { screen: 'signin', page, args: { token: location.hash.slice(1) } };
  return { screen: screens[page] ? page : 'flows', page, args: {} };
}

const rank = { agent: 0, supervisor: 1, admin: 2 };
/** Whether the signed-in person's role allows what `minimum` may do. */
export function can(minimum) { return person && rank[person.role] >= rank[minimum]; }

function shell(current) {
  const link = (path, label, screen) =>
    h('a', { href: path, class: current === screen ? 'active' : '', 'aria-current': current === screen ? 'page' : undefined,
             onclick: (e) => { e.preventDefault(); navigate(path); } }, label);
  const tenants = person.tenants.length > 1
    ? h('select', { 'aria-label': 'Tenant', onchange: async (e) => {
        const now = await api('PUT', '/v1/session', { tenant: e.target.value });
        setCSRF(now.csrf_token);
        await loadSession();
        navigate('/flows');
      } }, person.tenants.map((t) => h('option', { value: t.id, selected: t.id === person.tenant }, `${t.id} (${t.role})`)))
    : h('span', { class: 'tenant' }, person.tenant);
  const main = h('main', { id: 'main', tabIndex: -1 });
  replace(root,
    h('header', { class: 'top' },
      h('a', { class: 'brand', href: '/flows', onclick: (e) => { e.preventDefault(); navigate('/flows'); } }, 'Flowline'),
      h('nav', { 'aria-label': 'Studio' },
        link('/flows', 'Flows', 'flows'), link('/inbox', 'Inbox', 'inbox'), link('/conversations', 'Conversations', 'conversations'),
        can('admin') ? link('/channels', 'Channels', 'channels') : null, can('admin') ? link('/members', 'Members', 'members') : null),
      h('div', { class: 'who' }, tenants, h('span', { class: 'person', title: person.email }, person.name),
        h('button', { class: 'quiet', onclick: signOut }, 'Sign out'))),
    main);
  return main;
}

async function signOut() {
  try { await api('DELETE', '/v1/session'); } catch { /* signed out either way */ }
  person = null;
  setCSRF(null);
  navigate('/signin');
}

async function show() {
  if (leaveScreen) { leaveScreen(); leaveScreen = null; }
  const r = route();
  if (!person && !publicPages.has(r.page)) await loadSession();
  if (!person && !publicPages.has(r.page)) {
    history.replaceState({}, '', `/signin?return_to=${encodeURIComponent(location.pathname)}`);
    return show();
  }
  const module = await screens[r.screen]();
  if (r.screen === 'signin') {
    replace(root);
    leaveScreen = (await module.render(root, { page: r.page, token: r.args.token, navigate, loadSession })) || null;
    return;
  }
  const main = shell(r.screen === 'builder' ? 'flows' : r.screen);
  leaveScreen = (await module.render(main, { ...r.args, person, can, navigate })) || null;
  // A new screen is announced as a page load would be: its title, and the focus at its start.
  const heading = main.querySelector('h1');
  document.title = heading ? `${heading.textContent} · Flowline Studio` : 'Flowline Studio';
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

addEventListener('popstate', show);
show().catch((e) => replace(root, h('p', { class: 'error', role: 'alert' }, `The Studio could not start: ${e.message}`)));
