// Channels (admins): each with its webhook address to paste into Meta, Stripe or n8n; a new one, or an edit, from a
// form drawn from its kind's declared fields (GET /v1/channels/kinds). Secrets are written, never shown again: an
// edit leaves a secret as it is unless a new one is typed. An `api` channel's signing secret, which Flowline makes,
// is rotated here; a provider's secrets change when the provider issues new ones, by editing.

import { api } from './api.js';
import { h, replace, toast } from './dom.js';

export async function render(main, ctx) {
  const [{ kinds }, { channels }] = await Promise.all([api('GET', '/v1/channels/kinds'), api('GET', '/v1/channels?limit=500')]);
  const kindOf = (name) => kinds.find((x) => x.kind === name);
  const list = h('tbody');
  const editor = h('div', { class: 'channel-editor' });
  // A secret Flowline generated, shown once: kept on the page (not in a toast) until the person moves on.
  const once = h('div', { class: 'secret-once', role: 'status' });
  function showSecret(what, secret) {
    const input = h('input', { id: 'secret-once', readOnly: true, value: secret, class: 'code', onfocus: (e) => e.target.select() });
    replace(once, h('div', { class: 'card' }, h('label', { for: 'secret-once' }, `${what}, shown once: copy it now`), input,
      h('small', { class: 'hint' }, 'The receiver checks Flowline-Signature with it. It is not shown again.')));
    input.focus();
  }
  async function reload() { draw((await api('GET', '/v1/channels?limit=500')).channels); }

  const draw = (items) => replace(list, items.length ? items.map((c) => {
    const generated = !kindOf(c.kind)?.fields.some((f) => f.secret);
    return h('tr', {},
      h('td', {}, c.name), h('td', {}, c.kind),
      h('td', {}, c.webhook_path ? h('code', {}, location.origin + c.webhook_path) : '—'),
      h('td', {}, c.id, c.previous_secret_signs_until ? h('small', { class: 'hint' }, ` · the old secret signs until ${new Date(c.previous_secret_signs_until).toLocaleString()}`) : null),
      h('td', { class: 'actions' },
        h('button', { class: 'quiet', 'aria-label': `Edit ${c.name}`, onclick: () => edit(c) }, 'Edit'),
        generated && c.callback_url ? h('button', { class: 'quiet', 'aria-label': `Rotate the signing secret of ${c.name}`, onclick: () => rotate(c) }, 'Rotate secret') : null));
  }) : h('tr', {}, h('td', { colSpan: 5, class: 'empty' }, 'No channels yet.')));
  draw(channels);

  async function rotate(c) {
    if (!confirm(`Give ${c.name} a new signing secret? The current one keeps signing beside it for a day.`)) return;
    try {
      const r = await api('POST', `/v1/channels/${encodeURIComponent(c.id)}/rotate`);
      showSecret(`The new signing secret of ${c.name}`, r.signing_secret);
      await reload();
    } catch (err) { toast(err.message, 'error'); }
  }

  /** The kind's fields as inputs; editing, settings show their values and secrets are empty (left as they are). */
  function fieldInputs(k, prefix, values = null) {
    const all = [...k.fields];
    // An `api` channel's signing secret may be given instead of generated.
    if (!k.fields.some((f) => f.secret)) all.push({ name: 'secret', secret: true, required: false, schema: { type: 'string', description: 'the secret that signs callbacks, 16 to 256 characters; generated when left empty' } });
    return all.map((f) => {
      const id = `${prefix}-${f.name}`;
      const type = f.secret ? 'password' : f.schema.type === 'integer' ? 'number' : 'text';
      const value = values && !f.secret && values[f.name] != null ? String(values[f.name]) : '';
      const input = f.schema.enum
        ? h('select', { id, name: f.name }, h('option', { value: '' }, '—'), f.schema.enum.map((v) => h('option', { value: v, selected: v === value }, v)))
        : f.schema.format === 'pem' || (f.schema.description || '').includes('PEM')
          ? h('textarea', { id, name: f.name, rows: 3, value })
          : h('input', { id, name: f.name, type, value, required: f.required && !(values && f.secret), autocomplete: f.secret ? 'new-password' : 'off',
            placeholder: values && f.secret ? 'unchanged: type a new one to replace it' : undefined });
      const help = f.schema.description ? h('small', { class: 'hint', id: `${id}-help` }, f.schema.description) : null;
      if (help) input.setAttribute('aria-describedby', help.id);
      return h('div', { class: 'field' }, h('label', { for: id }, `${f.name.replaceAll('_', ' ')}${f.required ? ' *' : ''}`), input, help);
    });
  }

  /** The body of a form: its non-empty fields, typed by the kind's schemas. */
  function entries(form, k) {
    const body = {};
    for (const [key, value] of new FormData(form).entries()) {
      if (key === 'kind' || value === '') continue;
      const f = k.fields.find((x) => x.name === key);
      body[key] = f && f.schema.type === 'integer' ? Number(value) : value;
    }
    return body;
  }

  function edit(c) {
    const k = kindOf(c.kind);
    const form = h('form', { class: 'card', 'aria-label': `Edit ${c.name}` }, h('h2', {}, `Edit ${c.name}`),
      h('p', { class: 'hint' }, `A ${c.kind} channel. Secrets stay as they are unless you type new ones.`),
      h('div', { class: 'field' }, h('label', { for: 'edit-name' }, 'Name *'), h('input', { id: 'edit-name', name: 'name', required: true, value: c.name })),
      fieldInputs(k, 'edit', c),
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save'),
        h('button', { type: 'button', class: 'quiet', onclick: () => replace(editor) }, 'Cancel')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const given = entries(form, k);
      const body = {};
      if (given.name !== c.name) body.name = given.name;
      for (const f of k.fields) {
        if (f.secret) { if (given[f.name] !== undefined) body[f.name] = given[f.name]; continue; }
        const before = c[f.name] ?? undefined;
        if (given[f.name] === undefined && before !== undefined) body[f.name] = null;
        else if (given[f.name] !== undefined && given[f.name] !== before) body[f.name] = given[f.name];
      }
      if (given.secret) body.secret = given.secret;
      if (!Object.keys(body).length) { toast('Nothing changed'); return; }
      try {
        const saved = await api('PATCH', `/v1/channels/${encodeURIComponent(c.id)}`, body);
        replace(editor);
        if (saved.signing_secret) showSecret(`The signing secret of ${saved.name}`, saved.signing_secret); else toast(`${saved.name} saved`);
        await reload();
      } catch (err) { toast(err.message, 'error'); }
    });
    replace(editor, form);
    form.querySelector('#edit-name').focus();
  }

  const fields = h('div', { class: 'fields' });
  const kind = h('select', { id: 'channel-kind', name: 'kind', onchange: () => replace(fields, fieldInputs(kindOf(kind.value), 'channel')) },
    kinds.map((k) => h('option', { value: k.kind }, `${k.kind} — ${k.summary}`)));
  replace(fields, fieldInputs(kindOf(kind.value), 'channel'));
  const form = h('form', { class: 'card', 'aria-label': 'New channel' }, h('h2', {}, 'New channel'),
    h('div', { class: 'field' }, h('label', { for: 'channel-kind' }, 'Kind'), kind),
    h('div', { class: 'field' }, h('label', { for: 'channel-name' }, 'Name *'), h('input', { id: 'channel-name', name: 'name', required: true })),
    fields, h('button', { type: 'submit', class: 'primary' }, 'Create'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { kind: kind.value, ...entries(form, kindOf(kind.value)) };
    try {
      const created = await api('POST', '/v1/channels', body);
      if (created.signing_secret) showSecret(`The signing secret of ${created.name}`, created.signing_secret); else toast('Created');
      form.reset();
      replace(fields, fieldInputs(kindOf(kind.value), 'channel'));
      await reload();
    } catch (err) { toast(err.message, 'error'); }
  });
  replace(main, h('section', { class: 'page' }, h('h1', {}, 'Channels'),
    h('table', { class: 'list', 'aria-label': 'Channels' }, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Kind'), h('th', {}, 'Webhook URL'), h('th', {}, 'Id'), h('th', {}, h('span', { class: 'visually-hidden' }, 'Actions')))), list),
    once, editor, form));
}
