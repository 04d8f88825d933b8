// The inspector: the selected block's form, drawn from its JSON Schema (`params` in GET /v1/blocks), so a new
// block type or connector action needs nothing here. Text, numbers, yes/no, lists (one item per line) and
// objects get fields; anything more intricate is edited as JSON.

import { h, replace } from './dom.js';

const templateHint = 'Use {{ name }} to insert what a variable holds';

/**
 * Draws the form for `node` into `el`; `change(params)` gets the new params, `rename(id)` the new id, and
 * `connect(edges)` the node's new outgoing edges (the connections section: every port from the keyboard,
 * branches with their conditions).
 */
export function inspect(el, { node, block, actions, variables = [], isStart, problems, readOnly, change, rename, makeStart, edges, targets, connect }) {
  if (!node) {
    replace(el, h('p', { class: 'hint' }, 'Select a block to edit it, or drag one from the palette.'));
    return;
  }
  const params = structuredClone(node.params);
  const commit = () => change(params);
  const idInput = h('input', { id: 'inspect-id', value: node.id, disabled: readOnly, pattern: '[A-Za-z_][A-Za-z0-9_]*' });
  idInput.addEventListener('change', () => { if (idInput.value && idInput.value !== node.id) rename(idInput.value); });
  const schema = block?.params || { type: 'object', properties: {} };
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([key, s]) =>
    fieldFor(key, s, params[key], required.has(key), readOnly, (v) => {
      if (v === undefined) delete params[key]; else params[key] = v;
      commit();
    }, key === 'use' ? actions.map((a) => ({ value: a.name, label: a.summary })) : key === 'save' ? variables.map((v) => ({ value: v, label: 'a variable of this flow' })) : null));
  replace(el,
    h('h2', {}, `${node.type} block`),
    block ? h('p', { class: 'hint' }, block.summary) : null,
    h('div', { class: 'field' }, h('label', { for: 'inspect-id' }, 'Id'), idInput),
    isStart ? h('p', { class: 'badge ok' }, 'The flow starts here') : readOnly ? null : h('button', { class: 'quiet', onclick: makeStart }, 'Start the flow here'),
    problems.length ? h('ul', { class: 'problems-here', 'aria-label': 'Problems in this block' }, problems.map((p) => h('li', { class: p.severity }, p.message))) : null,
    h('form', { class: 'params', onsubmit: (e) => e.preventDefault() }, fields),
    connections(block?.ports || [], edges, targets, readOnly, connect));
}

/** The node's edges as fields: a target per port, and the branches (`when` and target each) in order. */
function connections(ports, edges, targets, readOnly, connect) {
  if (!ports.length) return null;
  const mine = edges.map((e) => ({ ...e }));
  const pick = (id, value, onchange, label) => {
    const select = h('select', { id, disabled: readOnly, 'aria-label': label },
      h('option', { value: '' }, '— none —'), targets.map((t) => h('option', { value: t, selected: t === value }, t)));
    select.addEventListener('change', () => onchange(select.value));
    return select;
  };
  const single = ports.filter((p) => p !== 'branch').map((port) => {
    const id = `edge-${port}`;
    const current = mine.find((e) => e.port === port)?.to || '';
    return h('div', { class: 'field' }, h('label', { for: id }, port.replaceAll('_', ' ')), pick(id, current, (to) => {
      const rest = mine.filter((e) => e.port !== port);
      connect(to ? [...rest, { port, to }] : rest);
    }, `${port.replaceAll("_", " ")} goes to`));
  });
  const branches = mine.filter((e) => e.port === 'branch').sort((a, b) => a.index - b.index);
  const setBranches = (list) => connect([...mine.filter((e) => e.port !== 'branch'), ...list.map((b, index) => ({ ...b, port: 'branch', index }))]);
  const branchRows = ports.includes('branch') ? h('fieldset', {}, h('legend', {}, 'branches, taken in order'),
    branches.map((b, i) => {
      const when = h('input', { id: `branch-when-${i}`, value: b.when ?? '', disabled: readOnly, placeholder: 'otherwise', 'aria-label': `branch ${i + 1} when` });
      when.addEventListener('change', () => setBranches(branches.map((x, j) => {
        if (j !== i) return x;
        const { when: _, ...rest } = x;
        return when.value.trim() ? { ...rest, when: when.value.trim() } : rest;
      })));
      return h('div', { class: 'branch' }, h('label', { for: `branch-when-${i}` }, `${i + 1}. when`), when,
        pick(`branch-to-${i}`, b.to, (to) => setBranches(to ? branches.map((x, j) => (j === i ? { ...x, to } : x)) : branches.filter((_, j) => j !== i)), `branch ${i + 1} goes to`));
    }),
    readOnly ? null : h('button', { class: 'quiet', type: 'button', onclick: () => setBranches([...branches, { to: targets[0] }]) }, 'Add a branch')) : null;
  return h('section', { class: 'connections', 'aria-label': 'Connections' }, h('h3', {}, 'Connections'), single, branchRows);
}

function label(key, isRequired) { return `${key.replaceAll('_', ' ')}${isRequired ? ' *' : ''}`; }

/** One field for `key`, by its schema. */
function fieldFor(key, schema, value, isRequired, readOnly, set, actions, path = key) {
  const id = `param-${path.replaceAll('.', '-')}`;
  const wrap = (input, help) => h('div', { class: 'field' }, h('label', { for: id }, label(key, isRequired)), input,
    help ? h('small', { class: 'hint' }, help) : null);
  const kind = kindOf(schema, value);
  if (kind === 'string') {
    const isTemplate = /\{\{/.test(schema.description || '') || /expressions/.test(schema.description || '');
    const input = isTemplate || (typeof value === 'string' && value.length > 60)
      ? h('textarea', { id, rows: 3, value: value ?? '', disabled: readOnly })
      : h('input', { id, value: value ?? '', disabled: readOnly, list: actions ? `${id}-choices` : undefined });
    input.addEventListener('change', () => set(input.value === '' && !isRequired ? undefined : input.value));
    // Suggestions: the catalog's actions for `use`, the flow's variables for `save`.
    const datalist = actions ? h('datalist', { id: `${id}-choices` }, actions.map((a) => h('option', { value: a.value }, a.label))) : null;
    return h('div', {}, wrap(input, isTemplate ? templateHint : schema.description), datalist);
  }
  if (kind === 'number') {
    const input = h('input', { id, type: 'number', value: value ?? '', disabled: readOnly, step: schema.type === 'integer' ? '1' : 'any' });
    input.addEventListener('change', () => set(input.value === '' ? undefined : Number(input.value)));
    return wrap(input, schema.description);
  }
  if (kind === 'boolean') {
    const input = h('input', { id, type: 'checkbox', checked: !!value, disabled: readOnly });
    input.addEventListener('change', () => set(input.checked));
    return wrap(input, schema.description);
  }
  if (kind === 'lines') {
    const lines = (value || []).map((x) => (typeof x === 'string' ? x : x.title ?? JSON.stringify(x)));
    const input = h('textarea', { id, rows: Math.max(2, lines.length + 1), value: lines.join('\n'), disabled: readOnly });
    const counter = h('small', { class: 'hint' });
    const count = () => { const n = input.value.split('\n').filter((l) => l.trim()).length; counter.textContent = `${n} item${n === 1 ? '' : 's'}, one per line`; };
    count();
    input.addEventListener('input', count);
    input.addEventListener('change', () => {
      const items = input.value.split('\n').map((l) => l.trim()).filter(Boolean);
      set(items.length ? items : undefined);
    });
    return h('div', { class: 'field' }, h('label', { for: id }, label(key, isRequired)), input, counter);
  }
  if (kind === 'object') {
    const inner = { ...(value || {}) };
    const req = new Set(schema.required || []);
    return h('fieldset', {}, h('legend', {}, label(key, isRequired)),
      Object.entries(schema.properties).map(([k, s]) => fieldFor(k, s, inner[k], req.has(k), readOnly, (v) => {
        if (v === undefined) delete inner[k]; else inner[k] = v;
        set(Object.keys(inner).length ? { ...inner } : undefined);
      }, null, `${path}.${k}`)));
  }
  const input = h('textarea', { id, rows: 4, class: 'code', value: value === undefined ? '' : JSON.stringify(value, null, 2), disabled: readOnly });
  const error = h('small', { class: 'error' });
  input.addEventListener('change', () => {
    if (!input.value.trim()) { set(undefined); return; }
    try { set(JSON.parse(input.value)); error.textContent = ''; } catch { error.textContent = 'not valid JSON'; }
  });
  return h('div', { class: 'field' }, h('label', { for: id }, `${label(key, isRequired)} (JSON)`), input, error);
}

/** How to edit a value of `schema`: string, number, boolean, lines (a list of strings or titled items), object, or json. */
function kindOf(schema, value) {
  if (schema.anyOf) {
    const simple = schema.anyOf.find((s) => s.type === 'string');
    if (simple && (value === undefined || typeof value === 'string')) return 'string';
    return 'json';
  }
  if (schema.type === 'string') return 'string';
  if (schema.type === 'integer' || schema.type === 'number') return 'number';
  if (schema.type === 'boolean') return 'boolean';
  if (schema.type === 'array') {
    const items = schema.items || {};
    const stringy = items.type === 'string' || items.anyOf?.some((s) => s.type === 'string');
    const plain = (value || []).every((x) => typeof x === 'string');
    return stringy && plain ? 'lines' : 'json';
  }
  if (schema.type === 'object' && schema.properties && (value === undefined || typeof value === 'object')) return 'object';
  return 'json';
}
