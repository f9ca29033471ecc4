// DOM helpers. Data only ever enters the page as text nodes or attribute values
// (textContent / setAttribute on fixed names), never as markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name === "data") {
      for (const [key, item] of Object.entries(value)) node.dataset[key] = String(item);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function $(selector) {
  return document.querySelector(selector);
}

export const DASH = "\u2014";

export function num(value) {
  return value === null || value === undefined ? DASH : String(value);
}

export function rate(value) {
  if (value === null || value === undefined) return DASH;
  return Number(value).toFixed(2);
}

export function seconds(value) {
  if (value === null || value === undefined) return DASH;
  const s = Number(value);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const pad = (n) => String(n).padStart(2, "0");

// An API timestamp as local time; the exact value stays in `datetime` and the tooltip.
export function time(iso) {
  if (!iso) return document.createTextNode(DASH);
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return document.createTextNode(String(iso));
  const text =
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return el("time", { datetime: iso, title: iso, text });
}

export function cell(field, ...children) {
  return el("td", { data: { field } }, ...children);
}

export function numCell(field, value, text) {
  return el("td", { class: "num", data: { field, value: value ?? "" } }, text ?? num(value));
}

export function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}
