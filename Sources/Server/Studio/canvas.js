// The builder's canvas: a flow's blocks as nodes and its edges as curves, in a world that pans and zooms.
// It draws the graph it is given and reports what the person does (select, move, connect, drop a block);
// the builder owns the graph and its history.

import { h, replace, svg } from './dom.js';
import { NODE_WIDTH } from './layout.js';

const HEAD = 50;
const PORT = 20;

/** A node's one-line summary: what its block does, from its params. */
export function summary(node) {
  const main = node.params[node.type];
  if (typeof main === 'string') return main;
  if (node.type === 'condition') return 'branches on its conditions';
  if (main && typeof main === 'object') return Object.entries(main).map(([k, v]) => `${k}: ${typeof v === 'object' ? '…' : v}`).join(', ');
  const first = Object.entries(node.params)[0];
  return first ? `${first[0]}: ${typeof first[1] === 'object' ? '…' : first[1]}` : '';
}

export class Canvas {
  /**
   * @param {HTMLElement} el where to draw
   * @param {object} hooks `select(ids, edge)`, `move(moves)`, `connect(from, port, to)`, `drop(type, action, point)`
   */
  constructor(el, hooks) {
    this.el = el;
    this.hooks = hooks;
    this.view = { x: 0, y: 0, scale: 1 };
    this.selected = new Set();
    this.selectedEdge = null;
    this.ports = {};
    this.problems = new Map();
    this.usedPorts = new Map();
    this.world = h('div', { class: 'world' });
    this.edgeLayer = svg('svg', { class: 'edges', width: '1', height: '1' });
    this.world.append(this.edgeLayer);
    el.append(this.world);
    el.tabIndex = 0;
    el.setAttribute('role', 'application');
    el.setAttribute('aria-label', 'Flow canvas: g goes to a block, arrow keys move the selection, Enter edits it, Delete removes it, Escape lets go');
    this.listen();
  }

  /** Draws `graph` with `diagnostics` (by block id); keeps the view and the selection. */
  draw(graph, diagnostics = new Map()) {
    // Not in the middle of a drag, which holds the nodes it moves: the drawing waits for the drop.
    if (this.dragging) { this.pending = [graph, diagnostics]; return; }
    this.graph = graph;
    this.problems = diagnostics;
    this.indexPorts();
    const nodes = graph.nodes.map((n) => this.node(n, diagnostics.get(n.id) || []));
    replace(this.world, this.edgeLayer, ...nodes);
    this.drawEdges();
    this.apply();
    if (this.marks) this.highlight([...this.marks.visited], this.marks.current);
  }

  /** The ports a node shows: all of them while selected (to draw a new edge from any), else `next` and those in use. */
  shownPorts(n) {
    const all = this.ports[n.type] || [];
    if (this.selected.has(n.id)) return all;
    const used = this.usedPorts.get(n.id);
    return all.filter((p) => p === 'next' || used?.has(p));
  }

  node(n, problems) {
    const ports = this.shownPorts(n);
    const height = HEAD + ports.length * PORT;
    const el = h('div', {
      class: `node type-${n.type}${this.selected.has(n.id) ? ' selected' : ''}${problems.length ? ' has-errors' : ''}${this.graph.start === n.id ? ' start' : ''}`,
      'data-id': n.id, tabIndex: -1, role: 'button', 'aria-label': `${n.type} block ${n.id}${problems.length ? `, ${problems.length} problem(s)` : ''}`,
      style: { left: `${n.position.x}px`, top: `${n.position.y}px`, width: `${NODE_WIDTH}px`, height: `${height}px` },
    },
    h('div', { class: 'node-head' }, h('span', { class: 'node-type' }, n.type), h('span', { class: 'node-id' }, n.id),
      this.graph.start === n.id ? h('span', { class: 'start-mark', title: 'the flow starts here' }, 'start') : null,
      problems.length ? h('span', { class: 'problem-count', title: problems.map((p) => p.message).join('\n') }, String(problems.length)) : null),
    h('div', { class: 'node-summary' }, summary(n)),
    ...ports.map((port, i) => h('div', { class: 'port', 'data-port': port, style: { top: `${HEAD + i * PORT}px` }, title: `drag to connect ${port}` },
      h('span', {}, port), h('i', {}))));
    return el;
  }

  /** Where an edge leaves `from`'s `port`, and where it reaches a node. */
  portPoint(node, port) {
    const ports = this.shownPorts(node);
    const i = Math.max(0, ports.indexOf(port));
    return { x: node.position.x + NODE_WIDTH, y: node.position.y + HEAD + i * PORT + PORT / 2 };
  }

  /** Marks the blocks a run visited, and the one it waits in (the preview's). */
  highlight(visited = [], current = null) {
    this.marks = { visited: new Set(visited), current };
    for (const el of this.world.querySelectorAll('.node')) {
      el.classList.toggle('visited', this.marks.visited.has(el.dataset.id));
      el.classList.toggle('running', el.dataset.id === current);
    }
  }

  /** Which ports of each node have edges: what an unselected node shows. */
  indexPorts() {
    this.usedPorts = new Map();
    for (const e of this.graph.edges) {
      if (!this.usedPorts.has(e.from)) this.usedPorts.set(e.from, new Set());
      this.usedPorts.get(e.from).add(e.port);
    }
  }

  drawEdges() {
    this.indexPorts();
    const byId = new Map(this.graph.nodes.map((n) => [n.id, n]));
    const paths = [];
    let maxX = 0, maxY = 0;
    for (const n of this.graph.nodes) { maxX = Math.max(maxX, n.position.x + NODE_WIDTH + 200); maxY = Math.max(maxY, n.position.y + 400); }
    this.graph.edges.forEach((e, index) => {
      const from = byId.get(e.from), to = byId.get(e.to);
      if (!from || !to) return;
      const a = this.portPoint(from, e.port);
      const b = { x: to.position.x, y: to.position.y + HEAD / 2 };
      const bend = Math.max(40, Math.abs(b.x - a.x) / 2);
      const d = `M${a.x},${a.y} C${a.x + bend},${a.y} ${b.x - bend},${b.y} ${b.x},${b.y}`;
      const path = svg('path', { d, class: `edge port-${e.port}${this.selectedEdge === index ? ' selected' : ''}`, 'data-edge': String(index) });
      const title = svg('title');
      title.textContent = `${e.from} ${e.port}${e.when ? ` (${e.when})` : ''} → ${e.to}`;
      path.append(title);
      paths.push(path);
    });
    this.edgeLayer.setAttribute('width', String(maxX));
    this.edgeLayer.setAttribute('height', String(maxY));
    this.edgeLayer.replaceChildren(...paths);
  }

  apply() {
    this.world.style.transform = `translate(${this.view.x}px, ${this.view.y}px) scale(${this.view.scale})`;
  }

  /** The world point under a screen point. */
  toWorld(clientX, clientY) {
    const r = this.el.getBoundingClientRect();
    return { x: (clientX - r.left - this.view.x) / this.view.scale, y: (clientY - r.top - this.view.y) / this.view.scale };
  }

  /** Zooms and pans so every node shows. */
  fit() {
    if (!this.graph?.nodes.length) return;
    const xs = this.graph.nodes.map((n) => n.position.x), ys = this.graph.nodes.map((n) => n.position.y);
    const minX = Math.min(...xs) - 40, minY = Math.min(...ys) - 40;
    const w = Math.max(...xs) + NODE_WIDTH + 80 - minX, hgt = Math.max(...ys) + 160 - minY;
    const r = this.el.getBoundingClientRect();
    const scale = Math.min(1, Math.max(0.1, Math.min(r.width / w, r.height / hgt)));
    this.view = { x: -minX * scale, y: -minY * scale, scale };
    this.apply();
  }

  select(ids, edge = null) {
    const before = this.selected;
    this.selected = new Set(ids);
    this.selectedEdge = edge;
    // Nodes whose selection changed show another set of ports: draw them again.
    for (const el of [...this.world.querySelectorAll('.node')]) {
      const id = el.dataset.id;
      if (before.has(id) !== this.selected.has(id)) el.replaceWith(this.node(this.graph.nodes.find((x) => x.id === id), this.problems.get(id) || []));
    }
    this.drawEdges();
    this.hooks.select([...this.selected], edge);
  }

  listen() {
    const el = this.el;
    let drag = null;
    el.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      el.focus({ preventScroll: true });
      const port = e.target.closest('.port');
      const node = e.target.closest('.node');
      const edge = e.target.closest('[data-edge]');
      if (port && node) {
        const from = node.dataset.id;
        const n = this.graph.nodes.find((x) => x.id === from);
        const start = this.portPoint(n, port.dataset.port);
        const line = svg('path', { class: 'edge drawing' });
        this.edgeLayer.append(line);
        drag = { kind: 'edge', from, port: port.dataset.port, start, line };
      } else if (node) {
        const id = node.dataset.id;
        if (e.shiftKey || e.metaKey || e.ctrlKey) {
          const next = new Set(this.selected);
          next.has(id) ? next.delete(id) : next.add(id);
          this.select(next);
        } else if (!this.selected.has(id)) this.select([id]);
        const at = this.toWorld(e.clientX, e.clientY);
        drag = { kind: 'move', at, moved: false, origin: new Map([...this.selected].map((s) => [s, { ...this.graph.nodes.find((x) => x.id === s).position }])) };
      } else if (edge) {
        this.select([], Number(edge.dataset.edge));
      } else {
        if (this.selected.size || this.selectedEdge !== null) this.select([]);
        drag = { kind: 'pan', x: e.clientX, y: e.clientY, view: { ...this.view } };
      }
      if (drag) { el.setPointerCapture(e.pointerId); this.dragging = true; }
    });
    el.addEventListener('pointermove', (e) => {
      if (!drag) return;
      if (drag.kind === 'pan') {
        this.view.x = drag.view.x + e.clientX - drag.x;
        this.view.y = drag.view.y + e.clientY - drag.y;
        this.apply();
      } else if (drag.kind === 'move') {
        const at = this.toWorld(e.clientX, e.clientY);
        const dx = at.x - drag.at.x, dy = at.y - drag.at.y;
        drag.moved = drag.moved || Math.abs(dx) + Math.abs(dy) > 2;
        for (const [id, p] of drag.origin) {
          const n = this.graph.nodes.find((x) => x.id === id);
          n.position = { x: Math.round(p.x + dx), y: Math.round(p.y + dy) };
          const nodeEl = this.world.querySelector(`.node[data-id="${CSS.escape(id)}"]`);
          if (nodeEl) { nodeEl.style.left = `${n.position.x}px`; nodeEl.style.top = `${n.position.y}px`; }
        }
        this.drawEdges();
      } else if (drag.kind === 'edge') {
        const b = this.toWorld(e.clientX, e.clientY);
        const a = drag.start;
        drag.line.setAttribute('d', `M${a.x},${a.y} C${a.x + 60},${a.y} ${b.x - 60},${b.y} ${b.x},${b.y}`);
        this.edgeLayer.append(drag.line);
      }
    });
    const end = (e) => {
      if (!drag) return;
      const d = drag;
      drag = null;
      this.dragging = false;
      if (this.pending) { const [g, problems] = this.pending; this.pending = null; this.draw(g, problems); }
      if (d.kind === 'move' && d.moved) this.hooks.move([...d.origin.keys()]);
      if (d.kind === 'edge') {
        d.line.remove();
        const target = document.elementFromPoint(e.clientX, e.clientY)?.closest('.node');
        if (target && target.dataset.id) this.hooks.connect(d.from, d.port, target.dataset.id);
        else this.drawEdges();
      }
    };
    el.addEventListener('pointerup', end);
    el.addEventListener('pointercancel', end);
    el.addEventListener('wheel', (e) => {
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) {
        const before = this.toWorld(e.clientX, e.clientY);
        this.view.scale = Math.min(2, Math.max(0.1, this.view.scale * (e.deltaY < 0 ? 1.1 : 1 / 1.1)));
        const r = el.getBoundingClientRect();
        this.view.x = e.clientX - r.left - before.x * this.view.scale;
        this.view.y = e.clientY - r.top - before.y * this.view.scale;
      } else {
        this.view.x -= e.deltaX;
        this.view.y -= e.deltaY;
      }
      this.apply();
    }, { passive: false });
    el.addEventListener('dragover', (e) => { if (e.dataTransfer.types.includes('application/x-flowline-block')) e.preventDefault(); });
    el.addEventListener('drop', (e) => {
      const data = e.dataTransfer.getData('application/x-flowline-block');
      if (!data) return;
      e.preventDefault();
      const { type, action } = JSON.parse(data);
      this.hooks.drop(type, action, this.toWorld(e.clientX, e.clientY));
    });
  }

  /** The world point at the middle of what shows, where a block added from the keyboard goes. */
  center() {
    const r = this.el.getBoundingClientRect();
    return this.toWorld(r.left + r.width / 2 - NODE_WIDTH / 2, r.top + r.height / 2 - 40);
  }

  zoom(factor) {
    this.view.scale = Math.min(2, Math.max(0.1, this.view.scale * factor));
    this.apply();
  }
}
