// Signing in, and the pages a mailed or printed link opens: the first admin's setup, an invitation, a new
// password, a sign-up and its confirmation. Tokens come in the address's fragment, which no server log sees.

import { api, setCSRF } from './api.js';
import { h, replace } from './dom.js';

function field(label, input) {
  const id = `f-${input.name}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

function form(title, fields, submit, onsubmit, extra = []) {
  const error = h('p', { class: 'error', role: 'alert' });
  const el = h('form', { class: 'card narrow', 'aria-label': title },
    h('h1', {}, title), ...fields, error, h('button', { type: 'submit', class: 'primary' }, submit), ...extra);
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const values = Object.fromEntries(new FormData(el).entries());
    try { await onsubmit(values); } catch (err) { error.textContent = err.message; }
  });
  return el;
}

const email = () => h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true });
const password = (auto = 'current-password') => h('input', { name: 'password', type: 'password', autocomplete: auto, required: true, minLength: auto === 'new-password' ? 10 : 1 });
const text = (name, auto) => h('input', { name, type: 'text', autocomplete: auto });

function returnTo() {
  const to = new URLSearchParams(location.search).get('return_to') || '/flows';
  return to.startsWith('/') && !to.startsWith('//') ? to : '/flows';
}

async function signedIn(person, ctx) {
  setCSRF(person.csrf_token);
  await ctx.loadSession();
  ctx.navigate(returnTo());
}

/** Sign-in buttons for each single sign-on provider (GET /v1/sso); `query` joins each start link. */
async function providers(query = '') {
  const { items } = await api('GET', '/v1/sso').catch(() => ({ items: [] }));
  if (!items.length) return [];
  return [h('p', { class: 'or' }, 'or'),
    ...items.map((p) => h('a', { class: 'button sso', href: `${p.start}?return_to=${encodeURIComponent(returnTo())}${query}` }, `Continue with ${p.label}`))];
}

export async function render(root, ctx) {
  const page = h('div', { class: 'signin' });
  replace(root, page);
  const token = ctx.token;
  switch (ctx.page) {
  case 'setup':
    replace(page, form('Set up the first admin', [field('Email', email()), field('Name', text('name', 'name')), field('Password (10 characters or more)', password('new-password'))],
      'Create the admin', async (v) => {
        await api('POST', '/v1/setup', { token, email: v.email, password: v.password, ...(v.name ? { name: v.name } : {}) });
        await signedIn(await api('POST', '/v1/session', { email: v.email, password: v.password }), ctx);
      }));
    break;
  case 'invitation':
    replace(page, form('Join your team', [field('Your name', text('name', 'name')), field('Choose a password (10 characters or more)', password('new-password'))],
      'Join', async (v) => {
        const person = await api('POST', '/v1/invitations/accept', { token, password: v.password, ...(v.name ? { name: v.name } : {}) });
        await signedIn(await api('POST', '/v1/session', { email: person.email, password: v.password, tenant: person.tenant }), ctx);
      }, await providers(`&invitation=${encodeURIComponent(token)}`)));
    break;
  case 'password':
    replace(page, form('Set a new password', [field('New password (10 characters or more)', password('new-password'))], 'Save', async (v) => {
      await api('POST', '/v1/password', { token, password: v.password });
      ctx.navigate('/signin');
    }));
    break;
  case 'signup':
    if (token) {
      replace(page, h('div', { class: 'card narrow' }, h('h1', {}, 'Confirming your email…')));
      try { await signedIn(await api('POST', '/v1/signup/verify', { token }), ctx); } catch (e) {
        replace(page, h('div', { class: 'card narrow' }, h('h1', {}, 'This link does not work'), h('p', { class: 'error', role: 'alert' }, e.message)));
      }
      break;
    }
    replace(page, form('Create your workspace', [field('Email', email()), field('Your name', text('name', 'name')), field('Business', text('company', 'organization')),
      field('Password (10 characters or more)', password('new-password'))], 'Sign up', async (v) => {
      await api('POST', '/v1/signup', Object.fromEntries(Object.entries(v).filter(([, x]) => x)));
      replace(page, h('div', { class: 'card narrow' }, h('h1', {}, 'Check your email'), h('p', {}, `We sent a link to ${v.email}.`)));
    }));
    break;
  default: {
    const signup = await api('GET', '/v1/signup').catch(() => ({ open: false }));
    replace(page, form('Sign in to Flowline', [field('Email', email()), field('Password', password())], 'Sign in', async (v) => {
      await signedIn(await api('POST', '/v1/session', { email: v.email, password: v.password }), ctx);
    }, [...await providers(), signup.open ? h('p', {}, h('a', { href: '/signup' }, 'Create a workspace')) : null]));
  }
  }
  page.querySelector('input')?.focus();
}
