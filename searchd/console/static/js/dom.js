// Small DOM helpers: build elements from data, never from HTML strings (no markup is ever parsed from a response).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// The image type of base64 bytes, from their first bytes; null when they are not an image a browser shows.
const MAGIC = [["iVBORw0KGgo", "image/png"], ["/9j/", "image/jpeg"], ["R0lGOD", "image/gif"], ["UklGR", "image/webp"], ["Qk", "image/bmp"]];

export function imageType(base64) {
  if (typeof base64 !== "string") return null;
  const found = MAGIC.find(([prefix]) => base64.startsWith(prefix));
  return found ? found[1] : null;
}

export function thumbnail(base64, alt) {
  const type = imageType(base64);
  if (!type) return h("span", { class: "blob" }, `${Math.round((base64 || "").length * 0.75)} bytes`);
  return h("img", { class: "thumb", src: `data:${type};base64,${base64}`, alt, decoding: "async" });
}

export function errorBox(message) {
  return h("p", { class: "error", role: "alert" }, message);
}

// Copy text to the clipboard; where the page is not a secure context (plain http to another host), select it instead.
export async function copyText(text, fallbackEl) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackEl) {
      const range = document.createRange();
      range.selectNodeContents(fallbackEl);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    return false;
  }
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function formatTime(epochSeconds) {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : "–";
}
