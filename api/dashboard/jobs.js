// The jobs panel: a page of GET /v1/jobs (filtered, searched), kept current by the event
// stream, with Retry and Cancel (confirmed), and a bulk retry of the failed jobs the filters
// find. A row shows the API's job; an event updates it at once, and after a terminal event
// (or for a job new to the first page) the row is read again from the API.

import { isAbort } from "./api.js";
import { crawlKind, pagesButton, togglePages } from "./crawl.js";
import { $, cell, confirmAction, copyButton, DASH, el, num, onCopyClick, time } from "./dom.js";
import { JobFilters } from "./jobfilters.js";

const MAX_ROWS = 100;
const BULK_LIMIT = 500;
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

export function jobLink(id) {
  return el(
    "a",
    { href: `#/jobs/${encodeURIComponent(id)}`, title: id, data: { part: "link" } },
    el("code", { text: id.slice(0, 8) }),
  );
}

export function jobUrl(job) {
  const input = job.input && typeof job.input === "object" ? job.input : {};
  return typeof input.url === "string" ? input.url : null;
}

function cells(job) {
  const status = STATUSES.has(job.status) ? job.status : "unknown";
  const attempts = `${num(job.attempts)} / ${num(job.max_attempts)}`;
  const url = jobUrl(job);
  return [
    cell("id", jobLink(job.id), " ", copyButton(job.id)),
    cell("kind", crawlKind(job)),
    cell("status", el("span", { class: `status status-${status}`, text: job.status })),
    cell("url", url ? el("span", { class: "url", title: url, text: url }) : DASH),
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
    this.filters = new JobFilters(() => this.load());
    this.rows = new Map(); // job id -> { job, tr, seq }
    this.api = null;
    this.loading = null;
    this.buffered = [];
    this.pending = new Set();
    this.inflight = 0;
    $("#jobs-reload").addEventListener("click", () => this.load());
    $("#jobs-retry-failed").addEventListener("click", () => this.retryFailed());
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
    this.loadAgents();
  }

  async loadAgents() {
    const api = this.api;
    try {
      const body = await api.get("/v1/agents?limit=200");
      if (this.api === api) this.filters.setAgents(body.items);
    } catch (error) {
      if (!isAbort(error) && this.api === api) this.notify(`Agents: ${error.message}`);
    }
  }

  clear() {
    this.api = null;
    this.loading = null;
    this.buffered = [];
    this.pending.clear();
    this.rows.clear();
    this.tbody.replaceChildren();
    this.empty.hidden = true;
    this.filters.clear();
  }

  // (Re)reads the list; events arriving meanwhile are applied after it, in order.
  async load() {
    const api = this.api;
    if (!api) return;
    const token = {};
    this.loading = token;
    this.buffered = [];
    let items = null;
    let next = null;
    try {
      ({ items, next_cursor: next } = await api.get(`/v1/jobs?${this.filters.query()}`));
    } catch (error) {
      if (!isAbort(error) && this.api === api) this.notify(`Jobs: ${error.message}`);
    }
    if (this.loading !== token || this.api !== api) return;
    if (items) {
      this.filters.setNext(next);
      this.rows.clear();
      for (const job of items) this.rows.set(job.id, { job, tr: this.row(job), seq: 0 });
      this.tbody.replaceChildren(...[...this.rows.values()].map((row) => row.tr));
    }
    const buffered = this.buffered;
    this.loading = null;
    this.buffered = [];
    for (const event of buffered) this.apply(event);
    this.empty.hidden = this.rows.size > 0;
    // A search reads a bounded stretch of jobs per page: none here may still mean some older.
    this.empty.textContent = this.filters.next
      ? "No match among these jobs: Older searches further back."
      : "No jobs.";
  }

  onEvent(event) {
    if (!event || typeof event.job_id !== "string") return;
    if (this.loading) this.buffered.push(event);
    else this.apply(event);
  }

  apply(event) {
    const row = this.rows.get(event.job_id);
    if (!row) {
      if (!this.filters.admits(event)) return;
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
    if (await onCopyClick(event)) return;
    const button = event.target.closest("button[data-action]");
    if (!button || !this.api) return;
    const tr = button.closest("tr");
    const id = tr.dataset.jobId;
    if (button.dataset.action === "pages") {
      try {
        await togglePages(this.api, tr, id, tr.children.length);
      } catch (error) {
        if (!isAbort(error)) this.notify(`Pages: ${error.message}`);
      }
      return;
    }
    const seqOf = () => this.rows.get(id)?.seq ?? 0;
    await jobAction(this.api, id, button.dataset.action, button, this.notify, seqOf, (job, seq) => {
      if (job) this.merge(id, job, seq);
      else this.refresh(id);
    });
  }

  async retryFailed() {
    const api = this.api;
    if (!api) return;
    const text =
      `Retry the failed jobs of these filters (${this.filters.describe()}), ` +
      `at most ${BULK_LIMIT}, each with a fresh attempt budget?`;
    if (!(await confirmAction(text, "Retry failed jobs"))) return;
    try {
      const body = await api.post("/v1/jobs/retry", this.filters.retryBody(BULK_LIMIT));
      if (this.api !== api) return;
      const more = body.more ? " More failed jobs match: retry again for them." : "";
      this.notify(`Retried ${body.retried} failed job${body.retried === 1 ? "" : "s"}.${more}`);
      this.load();
    } catch (error) {
      if (!isAbort(error) && this.api === api) this.notify(`Retry failed: ${error.message}`);
    }
  }
}

const VERBS = { retry: "Retry", cancel: "Cancel" };

// Retry or Cancel one job after the user confirms; `done(job, seq)` gets the API's answer
// (or null if the action failed, to read the job again) and `seqOf()` as it was when sent.
export async function jobAction(api, id, action, button, notify, seqOf, done) {
  const question =
    action === "cancel"
      ? `Cancel job ${id}? A running job stops within about a second.`
      : `Retry job ${id} with a fresh attempt budget?`;
  if (!(await confirmAction(question, `${VERBS[action]} job`))) return;
  button.disabled = true;
  const seq = seqOf();
  try {
    const job = await api.post(`/v1/jobs/${encodeURIComponent(id)}/${action}`);
    done(job, seq);
  } catch (error) {
    if (isAbort(error)) return;
    notify(`${VERBS[action]} failed: ${error.message}`);
    button.disabled = false;
    done(null, seq);
  }
}
