// The preview chat: the draft run by POST /v1/flows/{name}/simulate, nothing stored or sent. Buttons are
// tappable, waits skippable (/wait), events injectable (/event NAME {json}), connector results mockable; the
// blocks it ran are marked on the canvas, the one it waits in most.

import { api } from './api.js';
import { h, replace, toast } from './dom.js';

export function openPreview(panel, { name, highlight = () => {} }) {
  panel.hidden = false;
  const inputs = [];
  const chat = h('div', { class: 'chat', role: 'log', 'aria-label': 'Preview chat' });
  const input = h('input', { 'aria-label': 'Message', placeholder: 'Type a reply, /wait or /event stripe.paid {}' });
  const mocks = h('textarea', { class: 'code', rows: 3, 'aria-label': 'Mocked results (JSON, by action)', placeholder: '{"stripe.checkout": {"url": "https://pay.example/1"}}' });

  async function run() {
    let parsed;
    try { parsed = mocks.value.trim() ? JSON.parse(mocks.value) : undefined; } catch { toast('the mocks are not valid JSON', 'error'); return; }
    try {
      const r = await api('POST', `/v1/flows/${encodeURIComponent(name)}/simulate`, { inputs, ...(parsed ? { mocks: parsed } : {}) });
      replace(chat, r.transcript.map(line));
      highlight(r.visited, r.current);
      chat.scrollTop = chat.scrollHeight;
    } catch (e) {
      replace(chat, h('p', { class: 'error', role: 'alert' }, e.message));
    }
  }

  function send(text) { inputs.push(text); run(); }

  function line(text) {
    const [who, ...rest] = text.split(': ');
    const body = rest.join(': ');
    if (who === 'bot') {
      const buttons = [...body.matchAll(/\[([^\]]+)\]/g)].map((m) => m[1]);
      const words = body.replace(/\s*\[[^\]]+\]/g, '');
      return h('div', { class: 'bubble bot' }, words,
        buttons.length ? h('div', { class: 'choices' }, buttons.map((b) => h('button', { class: 'choice', onclick: () => send(b) }, b))) : null);
    }
    if (who === 'you') return h('div', { class: 'bubble you' }, body);
    return h('div', { class: `note ${who}` }, text);
  }

  const form = h('form', { class: 'composer' }, input, h('button', { type: 'submit', class: 'primary' }, 'Send'));
  form.addEventListener('submit', (e) => { e.preventDefault(); if (input.value.trim()) { send(input.value.trim()); input.value = ''; } });
  replace(panel,
    h('div', { class: 'panel-head' }, h('h2', {}, 'Preview'),
      h('button', { class: 'quiet', onclick: () => { inputs.length = 0; run(); } }, 'Restart'),
      h('button', { class: 'quiet', onclick: () => send('/wait') }, 'Skip wait'),
      h('button', { class: 'quiet', 'aria-label': 'Close', onclick: () => { panel.hidden = true; highlight([], null); } }, '×')),
    chat, form, h('details', {}, h('summary', {}, 'Mocked connector results'), mocks));
  run();
}
