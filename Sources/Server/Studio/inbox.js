// The agents' inbox: conversations waiting for a human, by queue, kept live by the event stream (GET /v1/events,
// which the browser reconnects with Last-Event-ID); claim, write, hand back, and (supervisors) transfer.

import { api } from './api.js';
import { h, replace, toast } from './dom.js';

export async function render(main, ctx) {
  let entries = [];
  let open = null;
  const unread = new Map();
  const list = h('ul', { class: 'inbox-list', 'aria-label': 'Waiting conversations' });
  const queue = h('select', { 'aria-label': 'Queue', onchange: () => refresh() }, h('option', { value: '' }, 'All queues'));
  const pane = h('section', { class: 'conversation-pane', 'aria-label': 'Conversation' }, h('p', { class: 'hint' }, 'Pick a conversation.'));
  const count = h('span', { class: 'badge', 'aria-label': 'unread messages' });
  replace(main, h('section', { class: 'inbox' },
    h('div', { class: 'inbox-side' }, h('div', { class: 'page-head' }, h('h1', {}, 'Inbox'), count), queue, list), pane));

  async function refresh() {
    const q = queue.value ? `?queue=${encodeURIComponent(queue.value)}` : '';
    const answer = await api('GET', `/v1/inbox${q}${q ? '&' : '?'}limit=500`);
    entries = answer.conversations;
    const queues = new Set([...queue.options].map((o) => o.value));
    for (const e of entries) if (!queues.has(e.queue)) queue.append(h('option', { value: e.queue }, e.queue));
    drawList();
  }

  function drawList() {
    const total = [...unread.values()].reduce((a, b) => a + b, 0);
    count.textContent = total ? String(total) : '';
    replace(list, entries.length ? entries.map((e) => h('li', { class: open === e.id ? 'open' : '' },
      h('button', { class: 'inbox-item', 'data-id': e.id, onclick: () => show(e.id) },
        h('strong', {}, e.contact), h('span', { class: 'queue' }, e.queue),
        h('span', { class: 'holder' }, e.agent ? (e.agent === ctx.person.id ? 'you' : e.agent) : 'nobody yet'),
        unread.get(e.id) ? h('span', { class: 'badge bad', 'aria-label': 'unread' }, String(unread.get(e.id))) : null))) : h('li', { class: 'empty' }, 'Nobody is waiting.'));
  }

  async function show(id) {
    open = id;
    unread.delete(id);
    drawList();
    const entry = entries.find((e) => e.id === id);
    const log = h('div', { class: 'chat', role: 'log', 'aria-label': 'Messages' });
    const text = h('textarea', { rows: 2, 'aria-label': 'Reply', placeholder: 'Write to the contact' });
    const composer = h('form', { class: 'composer' }, text, h('button', { type: 'submit', class: 'primary' }, 'Send'));
    composer.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!text.value.trim()) return;
      try {
        await api('POST', `/v1/inbox/${encodeURIComponent(id)}/messages`, { text: text.value });
        text.value = '';
        await Promise.all([refresh(), reload(log, id)]);
      } catch (err) { toast(err.message, 'error'); }
    });
    const act = (label, method, path, body, done) => h('button', { class: 'quiet', onclick: async () => {
      try { await api(method, path, body); toast(done); await refresh(); if (label !== 'Claim') { if (!entries.some((x) => x.id === id)) replace(pane, h('p', { class: 'hint' }, done)); } else show(id); }
      catch (err) { toast(err.message, 'error'); }
    } }, label);
    const transfer = h('form', { class: 'inline', 'aria-label': 'Transfer' },
      h('input', { name: 'agent', 'aria-label': 'Agent id (a person usr_… or a key id)', placeholder: 'usr_… or key id' }),
      h('button', { type: 'submit', class: 'quiet' }, 'Transfer'));
    transfer.addEventListener('submit', async (e) => {
      e.preventDefault();
      const agent = new FormData(transfer).get('agent');
      try { await api('POST', `/v1/inbox/${encodeURIComponent(id)}/transfer`, agent ? { agent } : {}); toast('Transferred'); await refresh(); show(id); }
      catch (err) { toast(err.message, 'error'); }
    });
    replace(pane,
      h('div', { class: 'panel-head' }, h('h2', {}, entry ? entry.contact : id),
        entry && !entry.agent ? act('Claim', 'POST', `/v1/inbox/${encodeURIComponent(id)}/claim`, undefined, 'Claimed') : null,
        act('Hand back', 'POST', `/v1/conversations/${encodeURIComponent(id)}/handback`, undefined, 'Handed back to the flow')),
      log, composer, ctx.can('supervisor') ? transfer : null);
    await reload(log, id);
  }

  /** Draws the conversation's messages as stored: what the event stream announced, once each. */
  let reloads = 0;
  async function reload(log, id) {
    const mine = ++reloads;
    const { messages } = await api('GET', `/v1/conversations/${encodeURIComponent(id)}/messages`);
    // An older answer that arrives after a newer one is dropped: the newest read wins.
    if (open !== id || mine !== reloads) return;
    replace(log, messages.map(bubble));
    log.scrollTop = log.scrollHeight;
  }

  function bubble(m) {
    return h('div', { class: `bubble ${m.direction === 'in' ? 'contact' : 'you'}` }, m.text,
      m.agent ? h('small', { class: 'by' }, m.agent === ctx.person.id ? 'you' : m.agent) : null);
  }

  const events = new EventSource('/v1/events');
  events.addEventListener('message', (e) => {
    const m = JSON.parse(e.data);
    if (m.conversation === open) {
      const log = pane.querySelector('.chat');
      if (log) reload(log, open).catch(() => {});
    } else if (m.direction === 'in' && entries.some((x) => x.id === m.conversation)) {
      unread.set(m.conversation, (unread.get(m.conversation) || 0) + 1);
      drawList();
    }
  });
  events.addEventListener('turn', () => refresh().catch(() => {}));
  await refresh();
  return () => events.close();
}
