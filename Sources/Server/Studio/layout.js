// Positions for nodes that have none (every flow written by hand): layers from the start block, left to right,
// each edge's target one column after its source; nodes no edge reaches start columns of their own.

export const NODE_WIDTH = 210;
export const COLUMN = 280;
export const ROW = 130;

/** Gives every node without a `position` one; nodes that have one keep it. Answers the graph. */
export function layout(graph) {
  const missing = graph.nodes.filter((n) => !n.position);
  if (!missing.length) return graph;
  const out = new Map(graph.nodes.map((n) => [n.id, []]));
  for (const e of graph.edges) if (out.has(e.from) && out.has(e.to)) out.get(e.from).push(e.to);
  const depth = new Map();
  const order = [];
  const visit = (root) => {
    if (depth.has(root)) return;
    const queue = [root];
    depth.set(root, 0);
    while (queue.length) {
      const id = queue.shift();
      order.push(id);
      for (const to of out.get(id) || []) {
        if (!depth.has(to)) { depth.set(to, depth.get(id) + 1); queue.push(to); }
      }
    }
  };
  if (graph.start && out.has(graph.start)) visit(graph.start);
  for (const n of graph.nodes) visit(n.id);
  // Long chains fold into rows of 12 columns, so a 1,000-block flow is a block of rows, not one line.
  const rows = new Map();
  const placed = new Map();
  for (const id of order) {
    const d = depth.get(id);
    const band = Math.floor(d / 12);
    const key = `${band}:${d % 12}`;
    const slot = rows.get(key) || 0;
    rows.set(key, slot + 1);
    placed.set(id, { d: d % 12, band, slot });
  }
  const bandHeight = new Map();
  for (const [key, count] of rows) {
    const band = Number(key.split(':')[0]);
    bandHeight.set(band, Math.max(bandHeight.get(band) || 0, count));
  }
  const bandTop = new Map();
  let top = 40;
  for (const band of [...bandHeight.keys()].sort((a, b) => a - b)) { bandTop.set(band, top); top += bandHeight.get(band) * ROW + 60; }
  for (const n of missing) {
    const p = placed.get(n.id);
    n.position = { x: 40 + p.d * COLUMN, y: bandTop.get(p.band) + p.slot * ROW };
  }
  return graph;
}
