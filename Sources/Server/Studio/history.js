// A flow's published versions: the list, a side-by-side diff of two, rollback, and moving waiting
// conversations to the newest version.

import { api } from './api.js';
import { h, replace, toast } from './dom.js';

export async function openHistory(panel, { name, can }) {
  panel.hidden = false;
  const path = `/v1/flows/${encodeURIComponent(name)}`;
  const { versions } = await api('GET', `${path}/versions`);
  const diff = h('div', { class: 'diff', 'aria-live': 'polite' });
  const from = h('select', { 'aria-label': 'From version' }, versions.map((v) => h('option', { value: v.version }, `v${v.version}`)));
  const to = h('select', { 'aria-label': 'To version' }, versions.map((v, i) => h('option', { value: v.version, selected: i === versions.length - 1 }, `v${v.version}`)));
  const showDiff = async () => {
    const d = await api('GET', `${path}/diff?from=${from.value}&to=${to.value}`);
    const left = [], right = [];
    for (const line of d.lines) {
      const mark = line[0], text = line.slice(2);
      if (mark === '-') left.push(h('div', { class: 'del' }, text));
      else if (mark === '+') right.push(h('div', { class: 'add' }, text));
      else { left.push(h('div', {}, text)); right.push(h('div', {}, text)); }
    }
    replace(diff, d.same_program ? h('p', { class: 'hint' }, 'The two versions compile to the same program.') : null,
      h('div', { class: 'side-by-side' }, h('pre', { 'aria-label': `v${from.value}` }, left), h('pre', { 'aria-label': `v${to.value}` }, right)));
  };
  const migrate = async () => {
    const r = await api('POST', `${path}/migrate`);
    toast(`${r.moved.length} conversation(s) moved to v${r.version}; ${r.stayed.length} stayed`);
    replace(diff, h('ul', {}, r.stayed.map((s) => h('li', {}, `${s.id}: ${s.reason}`))));
  };
  replace(panel,
    h('div', { class: 'panel-head' }, h('h2', {}, 'History'), h('button', { class: 'quiet', 'aria-label': 'Close', onclick: () => { panel.hidden = true; } }, '×')),
    versions.length ? h('ol', { class: 'versions' }, versions.map((v) => h('li', {}, `v${v.version} · ${new Date(v.published_at).toLocaleString()}`,
      can('supervisor') ? h('button', { class: 'quiet', onclick: async () => { const r = await api('POST', `${path}/rollback`, { version: v.version }); toast(`v${v.version} is published again as v${r.version}`); openHistory(panel, { name, can }); } }, 'Roll back to this') : null)))
      : h('p', { class: 'hint' }, 'Not published yet.'),
    versions.length > 1 ? h('div', { class: 'inline' }, from, to, h('button', { class: 'quiet', onclick: showDiff }, 'Compare')) : null,
    versions.length && can('supervisor') ? h('button', { class: 'quiet', onclick: migrate }, 'Move waiting conversations to the newest version') : null,
    diff);
}
