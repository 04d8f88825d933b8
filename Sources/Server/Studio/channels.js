// Channels (admins): each with its webhook address to paste into Meta, Stripe or n8n; a new one from a form drawn
// from its kind's declared fields (GET /v1/channels/kinds). Secrets are written, never shown again.

import { api } from './api.js';
import { h, replace, toast } from './dom.js';

export async function render(main, ctx) {
  const [{ kinds }, { channels }] = await Promise.all([api('GET', '/v1/channels/kinds'), api('GET', '/v1/channels?limit=500')]);
  const list = h('tbody');
  const draw = (items) => replace(list, items.length ? items.map((c) => h('tr', {},
    h('td', {}, c.name), h('td', {}, c.kind), h('td', {}, c.webhook_path ? h('code', {}, location.origin + c.webhook_path) : '—'), h('td', {}, c.id))) :
    h('tr', {}, h('td', { colSpan: 4, class: 'empty' }, 'No channels yet.')));
  draw(channels);
  const fields = h('div', { class: 'fields' });
  const kind = h('select', { id: 'channel-kind', name: 'kind', onchange: () => drawFields() }, kinds.map((k) => h('option', { value: k.kind }, `${k.kind} — ${k.summary}`)));
  function drawFields() {
    const k = kinds.find((x) => x.kind === kind.value);
    replace(fields, k.fields.map((f) => {
      const id = `channel-${f.name}`;
      const type = f.secret ? 'password' : f.schema.type === 'integer' ? 'number' : 'text';
      const input = f.schema.enum
        ? h('select', { id, name: f.name }, h('option', { value: '' }, '—'), f.schema.enum.map((v) => h('option', { value: v }, v)))
        : f.schema.format === 'pem' || (f.schema.description || '').includes('PEM')
          ? h('textarea', { id, name: f.name, rows: 3 })
          : h('input', { id, name: f.name, type, required: f.required, autocomplete: f.secret ? 'new-password' : 'off' });
      return h('div', { class: 'field' }, h('label', { for: id }, `${f.name.replaceAll('_', ' ')}${f.required ? ' *' : ''}`), input,
        f.schema.description ? h('small', { class: 'hint' }, f.schema.description) : null);
    }));
  }
  drawFields();
  const form = h('form', { class: 'card', 'aria-label': 'New channel' }, h('h2', {}, 'New channel'),
    h('div', { class: 'field' }, h('label', { for: 'channel-kind' }, 'Kind'), kind),
    h('div', { class: 'field' }, h('label', { for: 'channel-name' }, 'Name *'), h('input', { id: 'channel-name', name: 'name', required: true })),
    fields, h('button', { type: 'submit', class: 'primary' }, 'Create'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const k = kinds.find((x) => x.kind === kind.value);
    const body = { kind: kind.value };
    for (const [key, value] of new FormData(form).entries()) {
      if (key === 'kind' || value === '') continue;
      const f = k.fields.find((x) => x.name === key);
      body[key] = f && f.schema.type === 'integer' ? Number(value) : value;
    }
    try {
      const created = await api('POST', '/v1/channels', body);
      toast(created.signing_secret ? `Created. Its signing secret, shown once: ${created.signing_secret}` : 'Created');
      form.reset();
      draw((await api('GET', '/v1/channels?limit=500')).channels);
    } catch (err) { toast(err.message, 'error'); }
  });
  replace(main, h('section', { class: 'page' }, h('h1', {}, 'Channels'),
    h('table', { class: 'list', 'aria-label': 'Channels' }, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Kind'), h('th', {}, 'Webhook URL'), h('th', {}, 'Id'))), list),
    form));
}
