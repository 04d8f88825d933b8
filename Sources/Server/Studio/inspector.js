// The inspector: the selected block's form, drawn from its JSON Schema (`params` in GET /v1/blocks), so a new
// block type or connector action needs nothing here. Text, numbers, yes/no, lists (one item per line) and
// objects get fields; anything more intricate is edited as JSON. Each field carries its JSON Pointer in the flow
// document (`data-pointer`), which is how a diagnostic's `path` finds it; `maxItems` and `maxLength` in the schema
// (WhatsApp's limits) are counted while the person types.

import { h, replace } from './dom.js';

const templateHint = 'Use {{ name }} to insert what a variable holds';

/** A key as a JSON Pointer token (RFC 6901). */
export const token = (key) => String(key).replaceAll('~', '~0').replaceAll('/', '~1');

/**
 * The field `path` (a diagnostic's JSON Pointer) belongs to: the element under `root` with the longest
 * `data-pointer` that is `path` or one of its parents.
 */
export function fieldAt(root, path) {
  let best = null;
  for (const el of root.querySelectorAll('[data-pointer]')) {
    const p = el.dataset.pointer;
    if ((path === p || path.startsWith(`${p}/`)) && (!best || p.length > best.dataset.pointer.length)) best = el;
  }
  return best;
}

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
  const base = `/blocks/${token(node.id)}`;
  const idInput = h('input', { id: 'inspect-id', value: node.id, disabled: readOnly, pattern: '[A-Za-z_][A-Za-z0-9_]*' });
  idInput.addEventListener('change', () => { if (idInput.value && idInput.value !== node.id) rename(idInput.value); });
  const schema = block?.params || { type: 'object', properties: {} };
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([key, s]) =>
    fieldFor(key, s, params[key], required.has(key), readOnly, (v) => {
      if (v === undefined) delete params[key]; else params[key] = v;
      commit();
    }, key === 'use' ? actions.map((a) => ({ value: a.name, label: a.summary })) : key === 'save' ? variables.map((v) => ({ value: v, label: 'a variable of this flow' })) : null,
    key, `${base}/${token(key)}`));
  const form = h('form', { class: 'params', onsubmit: (e) => e.preventDefault() }, fields);
  const links = connections(block?.ports || [], block?.port_paths || {}, base, edges, targets, readOnly, connect);
  // Each problem goes to the field it names; what no field holds (the block as a whole) is listed above the form.
  const unplaced = [];
  const holder = h('div', {}, form, links);
  for (const p of problems) {
    const field = p.path ? fieldAt(holder, p.path) : null;
    if (field) mark(field, p); else unplaced.push(p);
  }
  replace(el,
    h('h2', {}, `${node.type} block`),
    block ? h('p', { class: 'hint' }, block.summary) : null,
    h('div', { class: 'field' }, h('label', { for: 'inspect-id' }, 'Id'), idInput),
    isStart ? h('p', { class: 'badge ok' }, 'The flow starts here') : readOnly ? null : h('button', { class: 'quiet', onclick: makeStart }, 'Start the flow here'),
    unplaced.length ? h('ul', { class: 'problems-here', 'aria-label': 'Problems in this block' }, unplaced.map((p) => h('li', { class: p.severity }, p.message))) : null,
    form, links);
}

/** Shows a diagnostic under its field, and tells assistive technology the field is invalid and why. */
function mark(input, problem) {
  const field = input.closest('.field, fieldset, .branch') || input.parentElement;
  let list = field.querySelector(':scope > .field-problems');
  if (!list) {
    list = h('ul', { class: 'field-problems', id: `${input.id || 'field'}-problems` });
    field.append(list);
    input.setAttribute('aria-describedby', [input.getAttribute('aria-describedby'), list.id].filter(Boolean).join(' '));
  }
  if (problem.severity === 'error') { input.setAttribute('aria-invalid', 'true'); field.classList.add('invalid'); }
  list.append(h('li', { class: problem.severity }, problem.message));
}

/** The node's edges as fields: a target per port, and the branches (`when` and target each) in order. */
function connections(ports, portPaths, base, edges, targets, readOnly, connect) {
  if (!ports.length) return null;
  const mine = edges.map((e) => ({ ...e }));
  const pick = (id, value, onchange, label, pointer) => {
    const select = h('select', { id, disabled: readOnly, 'aria-label': label, 'data-pointer': pointer },
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
    }, `${port.replaceAll('_', ' ')} goes to`, base + (portPaths[port] || `/${port}`)));
  });
  const branches = mine.filter((e) => e.port === 'branch').sort((a, b) => a.index - b.index);
  const setBranches = (list) => connect([...mine.filter((e) => e.port !== 'branch'), ...list.map((b, index) => ({ ...b, port: 'branch', index }))]);
  const branchAt = `${base}${portPaths.branch || '/next'}`;
  const branchRows = ports.includes('branch') ? h('fieldset', {}, h('legend', {}, 'branches, taken in order'),
    branches.map((b, i) => {
      const when = h('input', { id: `branch-when-${i}`, value: b.when ?? '', disabled: readOnly, placeholder: 'otherwise', 'aria-label': `branch ${i + 1} when`, 'data-pointer': `${branchAt}/${i}/when` });
      when.addEventListener('change', () => setBranches(branches.map((x, j) => {
        if (j !== i) return x;
        const { when: _, ...rest } = x;
        return when.value.trim() ? { ...rest, when: when.value.trim() } : rest;
      })));
      return h('div', { class: 'branch' }, h('label', { for: `branch-when-${i}` }, `${i + 1}. when`), when,
        pick(`branch-to-${i}`, b.to, (to) => setBranches(to ? branches.map((x, j) => (j === i ? { ...x, to } : x)) : branches.filter((_, j) => j !== i)), `branch ${i + 1} goes to`, `${branchAt}/${i}/goto`));
    }),
    readOnly ? null : h('button', { class: 'quiet', type: 'button', onclick: () => setBranches([...branches, { to: targets[0] }]) }, 'Add a branch')) : null;
  return h('section', { class: 'connections', 'aria-label': 'Connections' }, h('h3', {}, 'Connections'), single, branchRows);
}

function label(key, isRequired) { return `${key.replaceAll('_', ' ')}${isRequired ? ' *' : ''}`; }

/** The longest text the schema (or, for a list, its items) allows: a number, or undefined. */
function maxLengthOf(schema) {
  if (schema.maxLength) return schema.maxLength;
  return schema.anyOf?.map((s) => s.maxLength || s.properties?.title?.maxLength).find(Boolean);
}

/**
 * A live count under a field, for the limits in its schema: characters for text, items and each item's
 * characters for a list. Over a limit it turns into an error the screen reader announces.
 */
function limiter(schema, read, id) {
  const itemMax = schema.type === 'array' ? maxLengthOf(schema.items || {}) : undefined;
  const max = schema.type === 'array' ? schema.maxItems : maxLengthOf(schema);
  if (!max && !itemMax) return null;
  const out = h('small', { class: 'hint counter', id: `${id}-count`, 'aria-live': 'polite' });
  const update = () => {
    const v = read();
    const notes = [];
    let over = false;
    if (schema.type === 'array') {
      notes.push(max ? `${v.length} of at most ${max}` : `${v.length} item${v.length === 1 ? '' : 's'}`);
      if (max && v.length > max) over = true;
      v.forEach((item, i) => {
        const n = [...item].length;
        if (itemMax && n > itemMax) { over = true; notes.push(`item ${i + 1} has ${n} characters, at most ${itemMax}`); }
      });
    } else {
      const n = [...v].length;
      notes.push(`${n} of ${max} characters`);
      over = n > max;
    }
    out.textContent = notes.join(' · ');
    out.className = `counter ${over ? 'error' : 'hint'}`;
  };
  update();
  return { el: out, update };
}

/** One field for `key`, by its schema; `pointer` is where its value is in the flow document. */
function fieldFor(key, schema, value, isRequired, readOnly, set, actions, path, pointer) {
  const id = `param-${path.replaceAll('.', '-')}`;
  const help = (text) => (text ? h('small', { class: 'hint', id: `${id}-help` }, text) : null);
  const wrap = (input, text, extra = null) => {
    if (text) input.setAttribute('aria-describedby', [`${id}-help`, extra && `${id}-count`].filter(Boolean).join(' '));
    else if (extra) input.setAttribute('aria-describedby', `${id}-count`);
    return h('div', { class: 'field' }, h('label', { for: id }, label(key, isRequired)), input, help(text), extra);
  };
  const kind = kindOf(schema, value);
  if (kind === 'string') {
    const isTemplate = /\{\{/.test(schema.description || '') || /expressions/.test(schema.description || '');
    const input = isTemplate || (typeof value === 'string' && value.length > 60)
      ? h('textarea', { id, rows: 3, value: value ?? '', disabled: readOnly, 'data-pointer': pointer })
      : h('input', { id, value: value ?? '', disabled: readOnly, list: actions ? `${id}-choices` : undefined, 'data-pointer': pointer });
    input.addEventListener('change', () => set(input.value === '' && !isRequired ? undefined : input.value));
    const count = limiter(schema, () => input.value, id);
    if (count) input.addEventListener('input', count.update);
    // Suggestions: the catalog's actions for `use`, the flow's variables for `save`.
    const datalist = actions ? h('datalist', { id: `${id}-choices` }, actions.map((a) => h('option', { value: a.value }, a.label))) : null;
    return h('div', {}, wrap(input, isTemplate ? templateHint : schema.description, count?.el), datalist);
  }
  if (kind === 'number') {
    const input = h('input', { id, type: 'number', value: value ?? '', disabled: readOnly, step: schema.type === 'integer' ? '1' : 'any', 'data-pointer': pointer });
    input.addEventListener('change', () => set(input.value === '' ? undefined : Number(input.value)));
    return wrap(input, schema.description);
  }
  if (kind === 'boolean') {
    const input = h('input', { id, type: 'checkbox', checked: !!value, disabled: readOnly, 'data-pointer': pointer });
    input.addEventListener('change', () => set(input.checked));
    return wrap(input, schema.description);
  }
  if (kind === 'lines') {
    const lines = (value || []).map((x) => (typeof x === 'string' ? x : x.title ?? JSON.stringify(x)));
    const input = h('textarea', { id, rows: Math.max(2, lines.length + 1), value: lines.join('\n'), disabled: readOnly, 'data-pointer': pointer });
    const items = () => input.value.split('\n').map((l) => l.trim()).filter(Boolean);
    const count = limiter(schema, items, id) || { el: h('small', { class: 'hint', id: `${id}-count` }), update() {} };
    const update = () => { count.update(); if (!count.el.textContent) count.el.textContent = `${items().length} item(s), one per line`; };
    update();
    input.addEventListener('input', update);
    input.addEventListener('change', () => set(items().length ? items() : undefined));
    return wrap(input, schema.description ? `One per line. ${schema.description}` : 'One per line', count.el);
  }
  if (kind === 'object') {
    const inner = { ...(value || {}) };
    const req = new Set(schema.required || []);
    return h('fieldset', { 'data-pointer': pointer }, h('legend', {}, label(key, isRequired)),
      Object.entries(schema.properties).map(([k, s]) => fieldFor(k, s, inner[k], req.has(k), readOnly, (v) => {
        if (v === undefined) delete inner[k]; else inner[k] = v;
        set(Object.keys(inner).length ? { ...inner } : undefined);
      }, null, `${path}.${k}`, `${pointer}/${token(k)}`)));
  }
  const input = h('textarea', { id, rows: 4, class: 'code', value: value === undefined ? '' : JSON.stringify(value, null, 2), disabled: readOnly, 'data-pointer': pointer });
  const error = h('small', { class: 'error', id: `${id}-json`, role: 'alert' });
  input.setAttribute('aria-describedby', error.id);
  input.addEventListener('change', () => {
    if (!input.value.trim()) { set(undefined); return; }
    try { set(JSON.parse(input.value)); error.textContent = ''; } catch { error.textContent = 'not valid JSON'; }
  });
  return h('div', { class: 'field' }, h('label', { for: id }, `${label(key, isRequired)} (JSON)`), input, error, help(schema.description));
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
