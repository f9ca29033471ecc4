// The jobs panel: recent (or filtered) jobs from GET /v1/jobs, kept current by the event
// stream, with Retry and Cancel. A row shows the API's job; an event updates it at once, and
// after a terminal event (or for a job new to the page) the row is read again from the API.

import { isAbort } from "./api.js";
import { crawlKind, pagesButton, togglePages } from "./crawl.js";
import { $, cell, DASH, el, num, time } from "./dom.js";

const LIMIT = 50;
const MAX_ROWS = 100;
const FETCH_CONCURRENCY = 4;
const CRAWL_REFRESH_MS = 2000; // a running crawl's counts change without events of its own
const STATUSES = new Set(["queued", "running", "succeeded", "failed", "cancelled"]);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const RETRYABLE = new Set(["failed", "cancelled"]);
const CANCELLABLE = new Set(["queued", "running"]);
// Fields that change as a job runs; the others are fixed when it is created.
const LIVE_FIELDS = ["status", "attempts", "error", "result", "started_at", "finished_at"];

function errorCell(error) {
  if (!error) return cell("error", DASH);
  return cell(
    "error",
    el("code", { data: { part: "code" }, text: error.code ?? "" }),
    " ",
    el("span", { class: "error-message", title: error.message ?? "", data: { part: "message" } },
      error.message ?? ""),
  );
}

function actions(job) {
  const buttons = [pagesButton(job)].filter(Boolean);
  if (RETRYABLE.has(job.status)) {
    buttons.push(el("button", { type: "button", data: { action: "retry" }, text: "Retry" }));
  }
  if (CANCELLABLE.has(job.status)) {
    buttons.push(el("button", { type: "button", data: { action: "cancel" }, text: "Cancel" }));
  }
  return el("td", { class: "actions" }, ...buttons);
}

function cells(job) {
  const status = STATUSES.has(job.status) ? job.status : "unknown";
  const attempts = `${num(job.attempts)} / ${num(job.max_attempts)}`;
  return [
    cell("id", el("code", { title: job.id, text: job.id.slice(0, 8) })),
    cell("kind", crawlKind(job)),
    cell("status", el("span", { class: `status status-${status}`, text: job.status })),
    el("td", { class: "num", data: { field: "attempts", value: job.attempts ?? "" } }, attempts),
    errorCell(job.error),
    cell("created_at", time(job.created_at)),
    cell("finished_at", time(job.finished_at)),
    actions(job),
  ];
}

// What an event says about the job: its status and attempt, and its error where known.
function withEvent(job, event) {
  const next = { ...job, status: event.status, attempts: event.attempt };
  if (event.error) next.error = { ...event.error };
  else if (event.type === "succeeded" || (event.type === "queued" && event.reason === "retry")) {
    next.error = null;
  }
  if (!TERMINAL.has(event.status)) next.finished_at = null;
  return next;
}

export class JobsPanel {
  constructor(notify) {
    this.notify = notify;
    this.tbody = $("#jobs tbody");
    this.empty = $("#jobs-empty");
    this.filter = $("#job-filter");
    this.rows = new Map(); // job id -> { job, tr, seq }
    this.api = null;
    this.loading = null;
    this.buffered = [];
    this.pending = new Set();
    this.inflight = 0;
    this.filter.addEventListener("change", () => this.load());
    $("#jobs-reload").addEventListener("click", () => this.load());
    this.tbody.addEventListener("click", (event) => this.onClick(event));
    setInterval(() => this.refreshCrawls(), CRAWL_REFRESH_MS);
  }

  refreshCrawls() {
    for (const [id, row] of this.rows) {
      if (row.job.kind === "crawl" && row.job.status === "running") this.refresh(id);
    }
  }

  attach(api) {
    this.api = api;
  }

  clear() {
    this.api = null;
    this.loading = null;
    this.buffered = [];
    this.pending.clear();
    this.rows.clear();
    this.tbody.replaceChildren();
    this.empty.hidden = true;
    this.filter.value = "";
  }

  // (Re)reads the list; events arriving meanwhile are applied after it, in order.
  async load() {
    const api = this.api;
    if (!api) return;
    const token = {};
    this.loading = token;
    this.buffered = [];
    const query = new URLSearchParams({ limit: String(LIMIT) });
    if (this.filter.value) query.set("status", this.filter.value);
    let items = null;
    try {
      items = (await api.get(`/v1/jobs?${query}`)).items;
    } catch (error) {
      if (!isAbort(error) && this.api === api) this.notify(`Jobs: ${error.message}`);
    }
    if (this.loading !== token || this.api !== api) return;
    if (items) {
      this.rows.clear();
      for (const job of items) this.rows.set(job.id, { job, tr: this.row(job), seq: 0 });
      this.tbody.replaceChildren(...[...this.rows.values()].map((row) => row.tr));
    }
    const buffered = this.buffered;
    this.loading = null;
    this.buffered = [];
    for (const event of buffered) this.apply(event);
    this.empty.hidden = this.rows.size > 0;
  }

  onEvent(event) {
    if (!event || typeof event.job_id !== "string") return;
    if (this.loading) this.buffered.push(event);
    else this.apply(event);
  }

  apply(event) {
    const row = this.rows.get(event.job_id);
    if (!row) {
      if (this.filter.value && event.status !== this.filter.value) return;
      const job = withEvent({ id: event.job_id, kind: event.kind, error: null }, event);
      const added = { job, tr: this.row(job), seq: 1 };
      this.rows.set(job.id, added);
      this.tbody.prepend(added.tr);
      this.trim();
      this.empty.hidden = true;
      this.refresh(job.id);
      return;
    }
    row.seq += 1;
    this.show(row, withEvent(row.job, event));
    if (TERMINAL.has(event.status)) this.refresh(event.job_id);
  }

  row(job) {
    const tr = el("tr", { data: { jobId: job.id, status: job.status } });
    tr.append(...cells(job));
    return tr;
  }

  show(row, job) {
    row.job = job;
    row.tr.dataset.status = job.status;
    row.tr.replaceChildren(...cells(job));
  }

  // A job as the API returned it. If events arrived since the request was sent, they are
  // newer than the answer for the fields that change as the job runs: keep those.
  merge(id, job, seqAtRequest) {
    const row = this.rows.get(id);
    if (!row) return;
    if (row.seq === seqAtRequest) {
      this.show(row, job);
      return;
    }
    const merged = { ...job };
    for (const field of LIVE_FIELDS) merged[field] = row.job[field];
    this.show(row, merged);
  }

  trim() {
    while (this.rows.size > MAX_ROWS) {
      const last = this.tbody.lastElementChild;
      if (!last) break;
      this.rows.delete(last.dataset.jobId);
      last.remove();
    }
  }

  refresh(id) {
    this.pending.add(id);
    this.pump();
  }

  pump() {
    while (this.inflight < FETCH_CONCURRENCY && this.pending.size > 0) {
      const id = this.pending.values().next().value;
      this.pending.delete(id);
      this.inflight += 1;
      this.fetchOne(id).finally(() => {
        this.inflight -= 1;
        this.pump();
      });
    }
  }

  async fetchOne(id) {
    const api = this.api;
    const row = this.rows.get(id);
    if (!api || !row) return;
    const seq = row.seq;
    try {
      const job = await api.get(`/v1/jobs/${encodeURIComponent(id)}`);
      if (this.api === api) this.merge(id, job, seq);
    } catch (error) {
      if (!isAbort(error) && this.api === api) this.notify(`Job ${id}: ${error.message}`);
    }
  }

  async onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || !this.api) return;
    const tr = button.closest("tr");
    const id = tr.dataset.jobId;
    const action = button.dataset.action;
    if (action === "pages") {
      try {
        await togglePages(this.api, tr, id, tr.children.length);
      } catch (error) {
        if (!isAbort(error)) this.notify(`Pages: ${error.message}`);
      }
      return;
    }
    const row = this.rows.get(id);
    const seq = row ? row.seq : 0;
    button.disabled = true;
    const api = this.api;
    try {
      const job = await api.post(`/v1/jobs/${encodeURIComponent(id)}/${action}`);
      if (this.api === api) this.merge(id, job, seq);
    } catch (error) {
      if (isAbort(error) || this.api !== api) return;
      this.notify(`${action === "retry" ? "Retry" : "Cancel"} failed: ${error.message}`);
      button.disabled = false;
      this.refresh(id);
    }
  }
}
