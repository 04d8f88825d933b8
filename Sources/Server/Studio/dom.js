// A few lines instead of a framework: elements from a tag, properties and children.

/**
 * `h('button', {class: 'primary', onclick}, 'Save')`. Properties starting with `on` are listeners; `class`,
 * `for`, `list`, `aria-*`, `data-*` and `role` are attributes; others are set as properties.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class' || key === 'for' || key === 'role' || key === 'list' || key.startsWith('aria-') || key.startsWith('data-')) el.setAttribute(key, value);
    else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value);
    else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Elements in the SVG namespace, for the canvas's edges. */
export function svg(tag, attrs = {}) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

/** Calls `fn` once `ms` have passed without another call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

/** A message at the top of the screen for a few seconds. */
export function toast(text, kind = 'info') {
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  document.body.append(el);
  setTimeout(() => el.remove(), 4000);
}
