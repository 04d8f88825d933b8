// Conversations: a list with filters, and one conversation's messages beside its trace (each turn: the event,
// the blocks visited, the effects, the wait).

import { api } from './api.js';
import { h, replace } from './dom.js';

export async function render(main, ctx) {
  if (ctx.id) return detail(main, ctx);
  const filters = h('form', { class: 'inline filters', 'aria-label': 'Filters' },
    h('select', { name: 'status', 'aria-label': 'Status' }, ['', 'active', 'waiting', 'handoff', 'failed', 'ended', 'scheduled'].map((s) => h('option', { value: s }, s || 'any status'))),
    h('input', { name: 'flow', placeholder: 'flow', 'aria-label': 'Flow' }),
    h('input', { name: 'channel', placeholder: 'channel id', 'aria-label': 'Channel' }),
    h('input', { name: 'contact', placeholder: 'contact', 'aria-label': 'Contact' }),
    h('button', { type: 'submit', class: 'quiet' }, 'Filter'));
  const body = h('tbody');
  const load = async () => {
    const q = new URLSearchParams([...new FormData(filters).entries()].filter(([, v]) => v));
    q.set('limit', '200');
    const { conversations, total } = await api('GET', `/v1/conversations?${q}`);
    replace(body, conversations.length ? conversations.map((c) => h('tr', {},
      h('td', {}, h('a', { href: `/conversations/${c.id}`, onclick: (e) => { e.preventDefault(); ctx.navigate(`/conversations/${c.id}`); } }, c.contact)),
      h('td', {}, c.flow), h('td', {}, h('span', { class: `badge status-${c.status}` }, c.status)), h('td', {}, new Date(c.updated_at || c.created_at).toLocaleString()))) :
      h('tr', {}, h('td', { colSpan: 4, class: 'empty' }, `No conversations (${total}).`)));
  };
  filters.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  replace(main, h('section', { class: 'page' }, h('h1', {}, 'Conversations'), filters,
    h('table', { class: 'list', 'aria-label': 'Conversations' }, h('thead', {}, h('tr', {}, h('th', {}, 'Contact'), h('th', {}, 'Flow'), h('th', {}, 'Status'), h('th', {}, 'Updated'))), body)));
  await load();
}

async function detail(main, ctx) {
  const id = ctx.id;
  const [c, { messages }] = await Promise.all([api('GET', `/v1/conversations/${encodeURIComponent(id)}`), api('GET', `/v1/conversations/${encodeURIComponent(id)}/messages`)]);
  const trace = (c.trace || []).map((t) => h('li', {},
    h('div', {}, h('strong', {}, t.event?.type || t.event?.kind || 'turn'), ` · ${t.status}`),
    h('div', { class: 'visited' }, (t.visited || []).map((b) => h('span', { class: 'chip' }, b))),
    t.effects?.length ? h('div', { class: 'hint' }, `${t.effects.length} effect(s)`) : null));
  const visited = (c.trace || []).flatMap((t) => t.visited || []);
  const current = c.status === 'ended' || c.status === 'failed' ? '' : visited[visited.length - 1] || '';
  const onFlow = `/flows/${encodeURIComponent(c.flow)}?visited=${encodeURIComponent(visited.join(','))}${current ? `&current=${encodeURIComponent(current)}` : ''}`;
  replace(main, h('section', { class: 'page two' },
    h('div', {}, h('h1', {}, `${c.contact} · ${c.flow}`),
      h('p', {}, h('a', { href: onFlow, onclick: (e) => { e.preventDefault(); ctx.navigate(onFlow); } }, 'Show the blocks it visited on the flow')), h('p', {}, h('span', { class: `badge status-${c.status}` }, c.status), c.failure ? ` ${c.failure.reason || ''}` : ''),
      h('div', { class: 'chat', role: 'log', 'aria-label': 'Messages' }, messages.map((m) => h('div', { class: `bubble ${m.direction === 'in' ? 'contact' : 'you'}` }, m.text)))),
    h('div', {}, h('h2', {}, 'Trace'), h('ol', { class: 'trace' }, trace))));
}
