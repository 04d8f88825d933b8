// The builder: palette, canvas, inspector, problems and source of one flow's draft. Every edit is kept in an
// undo history and saved (debounced) with PUT /v1/flows/{name} in the graph form; the answer's diagnostics are
// drawn on their nodes and listed in the problems panel.

import { api, ApiError, GRAPH } from './api.js';
import { Canvas } from './canvas.js';
import { debounce, h, replace, toast } from './dom.js';
import { fieldAt, inspect } from './inspector.js';
import { layout } from './layout.js';
import { openHistory } from './history.js';
import { openPreview } from './preview.js';

// Edits arrive as change events (a field left, a drag dropped), not keystrokes: enough to gather a burst of them
// (undo pressed several times) into one save, and short enough to feel immediate.
const SAVE_DELAY = 50;

export async function render(main, ctx) {
  const name = ctx.name;
  const readOnly = !ctx.can('supervisor');
  const [catalog, first, draft] = await Promise.all([
    api('GET', '/v1/blocks'),
    api('GET', `/v1/flows/${encodeURIComponent(name)}`, undefined, { accept: GRAPH }),
    api('GET', `/v1/flows/${encodeURIComponent(name)}`),
  ]);
  const blocks = new Map(catalog.blocks.map((b) => [b.type, b]));
  let graph = layout(first);
  let diagnostics = [];
  const undo = [], redo = [];
  let clipboard = null;
  let selection = [];

  const status = h('span', { class: 'save-state', role: 'status' }, 'saved');
  const problemsList = h('ol', { class: 'problems', 'aria-label': 'Problems' });
  const inspector = h('aside', { class: 'inspector', 'aria-label': 'Inspector' });
  const canvasEl = h('div', { class: 'canvas' });
  const sourceEl = h('textarea', { class: 'source code', 'aria-label': 'Source', spellcheck: false, hidden: true, disabled: readOnly });
  const side = h('div', { class: 'side-panel', hidden: true });
  const palette = h('aside', { class: 'palette', 'aria-label': 'Palette' },
    h('h2', {}, 'Blocks'),
    catalog.blocks.map((b) => paletteItem(b.type, null, b.summary)),
    h('h2', {}, 'Actions'),
    catalog.actions.map((a) => paletteItem('use', a.name, a.summary)));

  function paletteItem(type, action, help) {
    const el = h('button', { class: `palette-item type-${type}`, draggable: !readOnly, disabled: readOnly, title: help,
      onclick: () => add(type, action, canvas.center()) }, action || type);
    el.addEventListener('dragstart', (e) => {
      e.dataTransfer.setData('application/x-flowline-block', JSON.stringify({ type, action }));
      e.dataTransfer.effectAllowed = 'copy';
    });
    return el;
  }

  const canvas = new Canvas(canvasEl, {
    select: (ids) => { selection = ids; drawInspector(); },
    move: () => changed('move', false),
    connect: (from, port, to) => connect(from, port, to),
    drop: (type, action, point) => add(type, action, point),
  });
  canvas.ports = Object.fromEntries(catalog.blocks.map((b) => [b.type, b.ports]));

  // --- the graph's edits, each undoable ---
  function snapshot() { return JSON.stringify(graph); }
  function changed(_why, redraw = true) {
    undo.push(lastSaved.snapshot);
    if (undo.length > 200) undo.shift();
    redo.length = 0;
    lastSaved.snapshot = snapshot();
    if (redraw) draw();
    save();
  }
  const lastSaved = { snapshot: snapshot() };
  function restore(text) { graph = JSON.parse(text); lastSaved.snapshot = text; draw(); save(); }

  function uniqueId(base) {
    const taken = new Set(graph.nodes.map((n) => n.id));
    let clean = base.replace(/[^A-Za-z0-9_]/g, '_');
    if (!/^[A-Za-z_]/.test(clean)) clean = `b_${clean}`;
    if (!taken.has(clean)) return clean;
    for (let i = 2; ; i++) if (!taken.has(`${clean}_${i}`)) return `${clean}_${i}`;
  }

  function add(type, action, point) {
    if (readOnly) return;
    const block = blocks.get(type);
    const params = {};
    for (const key of block?.params?.required || []) {
      const s = block.params.properties[key] || {};
      params[key] = key === 'use' ? action : s.type === 'object' ? {} : s.type === 'array' ? [] : key === type ? `New ${type}` : '';
    }
    if (type === 'use' && action) params.use = action;
    const id = uniqueId(action ? action.split('.').pop() : type);
    graph.nodes.push({ id, type, params, position: { x: Math.round(point.x), y: Math.round(point.y) } });
    if (!graph.start) graph.start = id;
    canvas.selected = new Set([id]);
    selection = [id];
    changed('add');
  }

  function connect(from, port, to) {
    if (readOnly || from === to && port !== 'next') return;
    if (port === 'branch') {
      const index = graph.edges.filter((e) => e.from === from && e.port === 'branch').length;
      graph.edges.push({ from, port, index, to });
    } else {
      graph.edges = graph.edges.filter((e) => !(e.from === from && e.port === port));
      graph.edges.push({ from, port, to });
    }
    changed('connect');
  }

  function remove() {
    if (readOnly) return;
    if (canvas.selectedEdge !== null && !selection.length) {
      graph.edges.splice(canvas.selectedEdge, 1);
      canvas.selectedEdge = null;
      changed('remove edge');
      return;
    }
    if (!selection.length) return;
    const gone = new Set(selection);
    graph.nodes = graph.nodes.filter((n) => !gone.has(n.id));
    graph.edges = graph.edges.filter((e) => !gone.has(e.from) && !gone.has(e.to));
    if (gone.has(graph.start)) graph.start = graph.nodes[0]?.id;
    canvas.selected = new Set();
    selection = [];
    changed('remove');
  }

  function copy() {
    if (!selection.length) return;
    const picked = new Set(selection);
    clipboard = { nodes: graph.nodes.filter((n) => picked.has(n.id)), edges: graph.edges.filter((e) => picked.has(e.from) && picked.has(e.to)) };
  }

  function paste() {
    if (!clipboard || readOnly) return;
    const renamed = new Map();
    for (const n of clipboard.nodes) {
      const id = uniqueId(n.id);
      renamed.set(n.id, id);
      graph.nodes.push({ ...structuredClone(n), id, position: { x: n.position.x + 40, y: n.position.y + 40 } });
    }
    for (const e of clipboard.edges) graph.edges.push({ ...e, from: renamed.get(e.from), to: renamed.get(e.to) });
    canvas.selected = new Set(renamed.values());
    selection = [...renamed.values()];
    changed('paste');
  }

  function rename(from, to) {
    if (graph.nodes.some((n) => n.id === to)) { toast(`there is a block ${to} already`, 'error'); drawInspector(); return; }
    for (const n of graph.nodes) if (n.id === from) n.id = to;
    for (const e of graph.edges) { if (e.from === from) e.from = to; if (e.to === from) e.to = to; }
    if (graph.start === from) graph.start = to;
    canvas.selected = new Set([to]);
    selection = [to];
    changed('rename');
  }

  // --- saving and diagnostics ---
  const save = debounce(async () => {
    if (readOnly) return;
    status.textContent = 'saving…';
    const before = JSON.stringify(diagnostics);
    try {
      const answer = await api('PUT', `/v1/flows/${encodeURIComponent(name)}`, graph, { type: GRAPH });
      diagnostics = answer.diagnostics;
      status.textContent = answer.valid ? 'saved · valid' : `saved · ${diagnostics.filter((d) => d.severity === 'error').length} error(s)`;
      status.className = `save-state ${answer.valid ? 'ok' : 'bad'}`;
    } catch (e) {
      status.textContent = 'not saved';
      status.className = 'save-state bad';
      if (e instanceof ApiError && e.problem.diagnostics) diagnostics = e.problem.diagnostics;
      else toast(e.message, 'error');
    }
    // Redrawn only when the diagnostics changed: a redraw in the middle of a drag would drop it.
    if (JSON.stringify(diagnostics) !== before) {
      drawProblems();
      canvas.draw(graph, byBlock());
      drawInspector();
    }
  }, SAVE_DELAY);

  function byBlock() {
    const m = new Map();
    for (const d of diagnostics) if (d.block) { if (!m.has(d.block)) m.set(d.block, []); m.get(d.block).push(d); }
    return m;
  }

  function drawProblems() {
    replace(problemsList, diagnostics.length ? diagnostics.map((d) => h('li', { class: d.severity },
      h('button', { class: 'link', onclick: () => (sourceEl.hidden ? showProblem(d) : goToLine(d.line, d.column)) },
        `${d.block ? `${d.block}: ` : ''}${d.message}`, h('span', { class: 'where' }, ` line ${d.line}:${d.column}`)))) : h('li', { class: 'none' }, 'No problems'));
  }

  /** Selects a diagnostic's block, brings it into view and puts the focus on the field it names. */
  function showProblem(d) {
    if (!d.block) return;
    canvas.select([d.block]);
    focusNode(d.block);
    const field = d.path && fieldAt(inspector, d.path);
    (field && !field.matches('fieldset') ? field : field?.querySelector('input, textarea, select') || inspector.querySelector('#inspect-id'))?.focus();
  }

  /** Puts the source's cursor at a diagnostic's line and column. */
  function goToLine(line, column) {
    const lines = sourceEl.value.split('\n');
    const at = lines.slice(0, Math.max(0, line - 1)).reduce((n, l) => n + l.length + 1, 0) + Math.max(0, column - 1);
    sourceEl.focus();
    sourceEl.setSelectionRange(at, at);
  }

  // Going to a block from the keyboard: its id in the box (suggested from the flow's blocks) selects it, brings it
  // into view and puts the focus on it, where the arrow keys move it and Enter edits it.
  const jumpList = h('datalist', { id: 'block-ids' });
  const jump = h('input', { class: 'jump', list: 'block-ids', 'aria-label': 'Go to block', placeholder: 'Go to block (g)', autocomplete: 'off' });
  jump.addEventListener('focus', () => replace(jumpList, graph.nodes.map((n) => h('option', { value: n.id }, `${n.type} block`))));
  jump.addEventListener('change', () => {
    const id = jump.value.trim();
    if (!id) return;
    if (!graph.nodes.some((n) => n.id === id)) { toast(`There is no block ${id}`, 'error'); return; }
    jump.value = '';
    goTo(id);
  });
  function goTo(id) {
    canvas.select([id]);
    focusNode(id);
    canvasEl.querySelector(`.node[data-id="${CSS.escape(id)}"]`)?.focus();
  }

  function focusNode(id) {
    const n = graph.nodes.find((x) => x.id === id);
    if (!n) return;
    const r = canvasEl.getBoundingClientRect();
    canvas.view.x = r.width / 2 - n.position.x * canvas.view.scale - 100;
    canvas.view.y = r.height / 2 - n.position.y * canvas.view.scale - 40;
    canvas.apply();
  }

  function drawInspector() {
    const node = selection.length === 1 ? graph.nodes.find((n) => n.id === selection[0]) : null;
    inspect(inspector, {
      node, block: node && blocks.get(node.type), actions: catalog.actions, isStart: node && graph.start === node.id,
      variables: [...new Set(graph.nodes.flatMap((n) => [n.params.save, ...Object.keys(n.type === 'set' && typeof n.params.set === 'object' ? n.params.set : {})]).filter((v) => typeof v === 'string' && v))].sort(),
      problems: node ? (byBlock().get(node.id) || []) : [], readOnly,
      change: (params) => { node.params = params; changed('edit'); },
      rename: (to) => rename(node.id, to),
      makeStart: () => { graph.start = node.id; changed('start'); },
      edges: node ? graph.edges.filter((e) => e.from === node.id) : [],
      targets: graph.nodes.map((n) => n.id).sort(),
      connect: (edges) => {
        graph.edges = [...graph.edges.filter((e) => e.from !== node.id), ...edges.map((e) => ({ ...e, from: node.id }))];
        changed('connect');
      },
    });
  }

  function draw() { canvas.draw(graph, byBlock()); drawInspector(); }

  // --- source view: the same draft as YAML ---
  const sourceSave = debounce(async () => {
    try {
      const answer = await api('PUT', `/v1/flows/${encodeURIComponent(name)}`, sourceEl.value, { type: 'application/yaml' });
      diagnostics = answer.diagnostics;
      drawProblems();
      if (answer.valid || diagnostics.every((d) => d.code !== 'yaml_syntax')) {
        undo.push(lastSaved.snapshot);
        graph = layout(await api('GET', `/v1/flows/${encodeURIComponent(name)}`, undefined, { accept: GRAPH }));
        lastSaved.snapshot = snapshot();
        canvas.draw(graph, byBlock());
      }
    } catch (e) { toast(e.message, 'error'); }
  }, 400);
  sourceEl.addEventListener('input', sourceSave);
  const sourceToggle = h('button', { class: 'quiet', 'aria-pressed': 'false', onclick: async () => {
    const showing = sourceEl.hidden;
    if (showing) sourceEl.value = readable(await api('GET', `/v1/flows/${encodeURIComponent(name)}`, undefined, { accept: 'application/yaml' }));
    sourceEl.hidden = !showing;
    canvasEl.hidden = showing;
    sourceToggle.setAttribute('aria-pressed', String(showing));
    sourceToggle.textContent = showing ? 'Canvas' : 'Source';
  } }, 'Source');

  /** A draft saved from the canvas is stored as compact JSON: shown indented. YAML is shown as written. */
  function readable(source) {
    try { return JSON.stringify(JSON.parse(source), null, 2); } catch { return source; }
  }

  async function publish() {
    try {
      const r = await api('POST', `/v1/flows/${encodeURIComponent(name)}/publish`);
      toast(`Published version ${r.version}`);
    } catch (e) {
      if (e instanceof ApiError && e.problem.diagnostics) { diagnostics = e.problem.diagnostics; drawProblems(); canvas.draw(graph, byBlock()); }
      toast(`Not published: ${e.message}`, 'error');
    }
  }

  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Flow' },
    h('h1', {}, name), status, jump, jumpList,
    h('button', { class: 'quiet', title: 'Undo (Ctrl+Z)', disabled: readOnly, onclick: () => doUndo() }, 'Undo'),
    h('button', { class: 'quiet', title: 'Redo (Ctrl+Shift+Z)', disabled: readOnly, onclick: () => doRedo() }, 'Redo'),
    h('button', { class: 'quiet', title: 'Fit the flow in view', onclick: () => canvas.fit() }, 'Fit'),
    h('button', { class: 'quiet', title: 'Place every block again', disabled: readOnly, onclick: () => { for (const n of graph.nodes) delete n.position; layout(graph); changed('layout'); canvas.fit(); } }, 'Arrange'),
    sourceToggle,
    h('button', { class: 'quiet', onclick: () => openHistory(side, { name, can: ctx.can, reload: () => ctx.navigate(`/flows/${encodeURIComponent(name)}`) }) }, 'History'),
    h('button', { class: 'quiet', onclick: () => openPreview(side, { name, highlight: (visited, current) => canvas.highlight(visited, current) }) }, 'Preview'),
    ctx.can('supervisor') ? h('button', { class: 'primary', onclick: publish }, 'Publish') : null);

  function doUndo() { if (!undo.length) return; redo.push(snapshot()); restore(undo.pop()); }
  function doRedo() { if (!redo.length) return; undo.push(snapshot()); restore(redo.pop()); }

  const onKey = (e) => {
    if (e.target.closest('input, textarea, select')) return;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key.toLowerCase() === 'z') { e.preventDefault(); e.shiftKey ? doRedo() : doUndo(); }
    else if (mod && e.key.toLowerCase() === 'y') { e.preventDefault(); doRedo(); }
    else if (mod && e.key.toLowerCase() === 'c') copy();
    else if (mod && e.key.toLowerCase() === 'v') paste();
    else if (mod && e.key.toLowerCase() === 'a') { e.preventDefault(); canvas.select(graph.nodes.map((n) => n.id)); }
    else if (e.key === 'Delete' || e.key === 'Backspace') { e.preventDefault(); remove(); }
    else if (e.key === 'Enter' && selection.length === 1) { e.preventDefault(); inspector.querySelector('input, textarea, select, button')?.focus(); }
    else if (e.key === 'Escape') { canvas.select([]); canvasEl.focus(); }
    else if (e.key === 'g' && !mod) { e.preventDefault(); jump.focus(); }
    else if (e.key === '+' || e.key === '=') canvas.zoom(1.1);
    else if (e.key === '-') canvas.zoom(1 / 1.1);
    else if (e.key.startsWith('Arrow') && selection.length && !readOnly) {
      e.preventDefault();
      const step = e.shiftKey ? 50 : 10;
      const [dx, dy] = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
      for (const n of graph.nodes) if (selection.includes(n.id)) n.position = { x: n.position.x + dx, y: n.position.y + dy };
      changed('nudge');
    }
  };
  canvasEl.addEventListener('keydown', onKey);

  replace(main, h('section', { class: 'builder' }, toolbar,
    h('div', { class: 'builder-body' }, palette, h('div', { class: 'stage' }, canvasEl, sourceEl), inspector, side),
    h('section', { class: 'problems-panel', 'aria-label': 'Problems' }, h('h2', {}, 'Problems'), problemsList)));

  diagnostics = draft.diagnostics;
  draw();
  drawProblems();
  canvas.fit();
  // A conversation's page links here with the blocks its turns visited: drawn on the flow.
  const marks = new URLSearchParams(location.search);
  if (marks.get('visited')) canvas.highlight(marks.get('visited').split(','), marks.get('current'));
}
