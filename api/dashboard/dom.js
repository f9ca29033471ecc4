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

export function $$(selector) {
  return document.querySelectorAll(selector);
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

// Asks before an action: resolves true if the user confirmed (Escape or Back: false).
export function confirmAction(text, label) {
  const dialog = $("#confirm");
  const ok = $("#confirm-ok");
  const back = $("#confirm-back");
  if (dialog.open) return Promise.resolve(false); // one question at a time
  $("#confirm-text").textContent = text;
  ok.textContent = label;
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.removeEventListener("click", yes);
      back.removeEventListener("click", no);
      dialog.removeEventListener("close", no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    back.addEventListener("click", no);
    dialog.addEventListener("close", no);
    dialog.showModal();
    back.focus();
  });
}

// Copies text to the clipboard; where the Clipboard API is missing (plain http on a
// non-local host), through a selected, off-screen text field.
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const field = el("textarea", { class: "visually-hidden", readonly: true });
  field.value = text;
  document.body.append(field);
  field.select();
  try {
    if (!document.execCommand("copy")) throw new Error("copy refused");
  } finally {
    field.remove();
  }
}

// A button that copies `text` and says so for a moment.
export function copyButton(text, label = "Copy") {
  const button = el("button", {
    type: "button",
    class: "copy",
    title: `Copy ${text}`,
    "aria-label": `Copy ${text}`,
    data: { copy: text },
    text: label,
  });
  return button;
}

export async function onCopyClick(event) {
  const button = event.target.closest("button[data-copy]");
  if (!button) return false;
  if (!button.dataset.label) button.dataset.label = button.textContent;
  const label = button.dataset.label;
  try {
    await copyText(button.dataset.copy);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
  return true;
}

// A value of the API as indented JSON text (for <pre>).
export function json(value) {
  return JSON.stringify(value, null, 2);
}
