// Members (admins): the tenant's people and their roles; invite by email and role, change a role, sign someone
// out everywhere, send a new-password link, remove. Links are emailed through the tenant's email channel, or
// shown here to pass on when it has none.

import { api } from './api.js';
import { h, replace, toast } from './dom.js';

const roles = ['agent', 'supervisor', 'admin'];

export async function render(main, ctx) {
  const body = h('tbody');
  const shown = h('div', { 'aria-live': 'polite' });
  const showLink = (answer, what) => replace(shown, answer.sent
    ? h('p', { class: 'card' }, `${what} emailed to ${answer.email}.`)
    : h('div', { class: 'card' }, h('p', {}, `${what} for ${answer.email} (works once, until ${new Date(answer.expires_at).toLocaleString()}); pass it on:`),
      h('input', { readOnly: true, value: new URL(answer.link, location.origin).href, 'aria-label': `${what} link`, onfocus: (e) => e.target.select() })));
  async function load() {
    const { members } = await api('GET', '/v1/members?limit=500');
    replace(body, members.map((m) => {
      const role = h('select', { 'aria-label': `Role of ${m.email}` }, roles.map((r) => h('option', { value: r, selected: r === m.role }, r)));
      role.addEventListener('change', async () => {
        try { await api('PUT', `/v1/members/${m.id}`, { role: role.value }); toast(`${m.email} is ${role.value} now`); } catch (e) { toast(e.message, 'error'); role.value = m.role; }
      });
      const act = (label, method, path, done) => h('button', { class: 'quiet', onclick: async () => {
        try { const answer = await api(method, path); if (answer && answer.email && 'sent' in answer) showLink(answer, 'A new-password link'); else toast(done); await load(); } catch (e) { toast(e.message, 'error'); }
      } }, label);
      return h('tr', {}, h('td', {}, m.name), h('td', {}, m.email), h('td', {}, m.id === ctx.person.id ? m.role : role),
        h('td', {}, m.id === ctx.person.id ? 'you' : [
          act('Sign out everywhere', 'DELETE', `/v1/members/${m.id}/sessions`, `${m.email} is signed out`),
          act('New password', 'POST', `/v1/members/${m.id}/reset`, ''),
          act('Remove', 'DELETE', `/v1/members/${m.id}`, `${m.email} removed`),
        ]));
    }));
  }
  const invite = h('form', { class: 'inline card', 'aria-label': 'Invite someone' },
    h('label', { for: 'invite-email' }, 'Invite'), h('input', { id: 'invite-email', name: 'email', type: 'email', required: true, placeholder: 'name@example.com' }),
    h('select', { name: 'role', 'aria-label': 'Role' }, roles.map((r) => h('option', { value: r }, r))),
    h('button', { type: 'submit', class: 'primary' }, 'Invite'));
  invite.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = Object.fromEntries(new FormData(invite).entries());
    try { showLink(await api('POST', '/v1/members/invitations', v), 'An invitation'); invite.reset(); } catch (err) { toast(err.message, 'error'); }
  });
  replace(main, h('section', { class: 'page' }, h('h1', {}, 'Members'), invite, shown,
    h('table', { class: 'list', 'aria-label': 'Members' }, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Email'), h('th', {}, 'Role'), h('th', {}, ''))), body)));
  await load();
}
