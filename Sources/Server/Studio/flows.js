// The flows list: each flow's draft state, latest published version and live conversations; create, duplicate,
// and delete a draft never published.

import { api, GRAPH } from './api.js';
import { h, replace, toast } from './dom.js';

// A new flow starts when someone writes its name, so it does not take over every conversation of the channel.
const starter = (name) => `flow: ${name}
trigger: { channel: api, keywords: [${JSON.stringify(name)}] }
start: hello
blocks:
  hello:
    text: "Hello!"
    next: bye
  bye:
    end: "Bye!"
`;

export async function render(main, ctx) {
  const body = h('tbody');
  const nameInput = h('input', { id: 'new-flow', name: 'name', placeholder: 'new-flow-name', pattern: '[A-Za-z0-9_-]{1,100}', required: true });
  const create = h('form', { class: 'inline', 'aria-label': 'New flow' },
    h('label', { for: 'new-flow' }, 'New flow'), nameInput, h('button', { type: 'submit', class: 'primary' }, 'Create'));
  create.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = nameInput.value.trim();
    try {
      await api('PUT', `/v1/flows/${encodeURIComponent(name)}`, starter(name), { type: 'application/yaml' });
      ctx.navigate(`/flows/${encodeURIComponent(name)}`);
    } catch (err) { toast(err.message, 'error'); }
  });
  replace(main, h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Flows'), ctx.can('supervisor') ? create : null),
    h('table', { class: 'list', 'aria-label': 'Flows' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Flow'), h('th', {}, 'Draft'), h('th', {}, 'Published'), h('th', {}, 'Live'), h('th', {}, ''))), body)));

  const { flows } = await api('GET', '/v1/flows?limit=500');
  if (!flows.length) replace(body, h('tr', {}, h('td', { colSpan: 5, class: 'empty' }, 'No flows yet: create one.')));
  else replace(body, flows.map((f) => row(f, ctx)));
}

function row(flow, ctx) {
  const state = h('td', {}, '…');
  const live = h('td', {}, '…');
  const open = h('a', { href: `/flows/${encodeURIComponent(flow.name)}`, onclick: (e) => { e.preventDefault(); ctx.navigate(`/flows/${encodeURIComponent(flow.name)}`); } }, flow.name);
  const duplicate = ctx.can('supervisor') ? h('button', { class: 'quiet', onclick: () => copy(flow.name, ctx) }, 'Duplicate') : null;
  const remove = ctx.can('supervisor') && !flow.latest_version
    ? h('button', { class: 'quiet', 'aria-label': `Delete ${flow.name}`, onclick: async () => {
        if (!confirm(`Delete the draft ${flow.name}?`)) return;
        try { await api('DELETE', `/v1/flows/${encodeURIComponent(flow.name)}`); ctx.navigate('/flows'); } catch (err) { toast(err.message, 'error'); }
      } }, 'Delete') : null;
  api('GET', `/v1/flows/${encodeURIComponent(flow.name)}`).then((d) => {
    const errors = d.diagnostics.filter((x) => x.severity === 'error').length;
    replace(state, h('span', { class: `badge ${d.valid ? 'ok' : 'bad'}` }, d.valid ? 'valid' : `${errors} error${errors === 1 ? '' : 's'}`));
  }).catch(() => replace(state, '—'));
  api('GET', `/v1/conversations?flow=${encodeURIComponent(flow.name)}&status=waiting&limit=1`).then((c) => replace(live, String(c.total))).catch(() => replace(live, '—'));
  return h('tr', {}, h('td', {}, open), state, h('td', {}, flow.latest_version ? `v${flow.latest_version}` : 'never'), live, h('td', {}, duplicate, remove));
}

async function copy(name, ctx) {
  const to = prompt(`Duplicate ${name} as`, `${name}-copy`);
  if (!to) return;
  try {
    const graph = await api('GET', `/v1/flows/${encodeURIComponent(name)}`, undefined, { accept: GRAPH });
    graph.flow = to;
    await api('PUT', `/v1/flows/${encodeURIComponent(to)}`, graph, { type: GRAPH });
    ctx.navigate(`/flows/${encodeURIComponent(to)}`);
  } catch (err) { toast(err.message, 'error'); }
}
