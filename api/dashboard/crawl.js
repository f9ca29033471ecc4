// A crawl's progress in its job row, and its pages (GET /v1/jobs/{id}/pages) in a row below.

import { DASH, el, num } from "./dom.js";

const PAGES_LIMIT = 50;

// "crawl · 12 / 40 pages" from the crawl's live result.
export function crawlKind(job) {
  const pages = job.result && job.result.pages;
  if (job.kind !== "crawl" || !pages) return job.kind ?? DASH;
  const ended = (pages.succeeded ?? 0) + (pages.failed ?? 0);
  const total = ended + (pages.queued ?? 0) + (pages.running ?? 0);
  return el("span", { title: JSON.stringify(pages) }, `crawl \u00b7 ${ended} / ${total} pages`);
}

export function pagesButton(job) {
  if (job.kind !== "crawl") return null;
  return el("button", { type: "button", data: { action: "pages" }, text: "Pages" });
}

function pagesTable(items) {
  const head = el("tr", {}, ...["url", "depth", "status", "skipped"].map(
    (name) => el("th", { scope: "col", text: name })));
  const rows = items.map((page) => el("tr", {},
    el("td", { class: "url", title: page.url, text: page.url }),
    el("td", { class: "num", text: num(page.depth) }),
    el("td", {}, el("span", { class: `status status-${page.status}`, text: page.status })),
    el("td", { text: page.skipped_because ?? DASH })));
  return el("table", { class: "crawl-pages" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

// Shows (or hides, on a second click) the crawl's first pages under its row.
export async function togglePages(api, tr, id, columns) {
  const next = tr.nextElementSibling;
  if (next && next.dataset.pagesOf === id) {
    next.remove();
    return;
  }
  const query = new URLSearchParams({ limit: String(PAGES_LIMIT) });
  const body = await api.get(`/v1/jobs/${encodeURIComponent(id)}/pages?${query}`);
  const more = body.next_cursor ? el("p", { class: "empty", text: `First ${PAGES_LIMIT}.` }) : null;
  const td = el("td", { colspan: String(columns) }, pagesTable(body.items), more);
  tr.after(el("tr", { class: "crawl-pages-row", data: { pagesOf: id } }, td));
}
