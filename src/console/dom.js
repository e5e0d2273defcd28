/* global Node */
// Tiny DOM helpers: elements are built with properties and text nodes, never from HTML strings,
// so nothing received from the API can inject markup.

/**
 * Creates an element. `attrs` keys starting with `on` add listeners; `class`, `for`, `aria-*`,
 * `data-*` and the rest are set as attributes; `hidden`/`open`/`disabled` as booleans.
 */
export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (v === true) el.setAttribute(k, '')
    else el.setAttribute(k, String(v))
  }
  append(el, children)
  return el
}

/** Appends children: nodes, strings (as text) and arrays of them; null and undefined are skipped. */
export function append (el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}

/** Replaces the content of `el`. */
export function replace (el, ...children) {
  el.replaceChildren()
  return append(el, children)
}
