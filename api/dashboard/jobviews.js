// The parts of the job page, built from the API's answers as text nodes only: the summary,
// the result (long text as text, objects and lists folded), the error, the attempts'
// timeline, the webhook deliveries, one event line.

import { cell, DASH, el, json, num, seconds, time } from "./dom.js";

const LONG_TEXT = 120;
const TEXT_KEYS = new Set(["markdown", "text", "html", "raw_html", "body"]);

function part(name, title, ...children) {
  const attrs = { class: "job-part", data: { part: name } };
  return el("section", attrs, el("h3", { text: title }), ...children);
}

function fields(pairs) {
  const list = el("dl", { class: "fields" });
  for (const [name, value] of pairs) {
    list.append(el("dt", { text: name }), el("dd", { data: { field: name } }, value ?? DASH));
  }
  return list;
}

function code(text) {
  return text === null || text === undefined ? DASH : el("code", { text: String(text) });
}

function duration(start, end) {
  if (!start || !end) return null;
  return seconds((Date.parse(end) - Date.parse(start)) / 1000);
}

// A crawl's page job links to its crawl (a job too).
function parentLink(id) {
  const attrs = { href: `#/jobs/${encodeURIComponent(id)}`, data: { part: "parent" } };
  return el("a", attrs, el("code", { text: id }));
}

export function summaryView(job, scheduleLink, actions) {
  const status = el("span", { class: `status status-${job.status}`, text: job.status });
  return part(
    "summary",
    "Summary",
    fields([
      ["status", status],
      ["kind", job.kind],
      ["url", typeof job.input?.url === "string" ? code(job.input.url) : null],
      ["attempts", `${num(job.attempts)} / ${num(job.max_attempts)}`],
      ["agent", code(job.agent_id)],
      ["created", time(job.created_at)],
      ["started", time(job.started_at)],
      ["finished", time(job.finished_at)],
      ["run time", duration(job.started_at, job.finished_at)],
      ["timeout", seconds(job.timeout_s)],
      ["webhook", job.webhook_url ? code(job.webhook_url) : null],
      ["schedule", scheduleLink],
      ...(job.parent_id ? [["parent", parentLink(job.parent_id)]] : []),
    ]),
    actions,
  );
}

function isLong(text) {
  return text.length > LONG_TEXT || text.includes("\n");
}

function folded(key, value, open) {
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const size = Array.isArray(value)
    ? plural(value.length, "item")
    : typeof value === "string"
      ? plural(value.length, "character")
      : plural(Object.keys(value).length, "field");
  const text = typeof value === "string" ? value : json(value);
  return el(
    "details",
    { open, data: { key } },
    el("summary", {}, el("code", { text: key }), ` (${size})`),
    el("pre", { class: typeof value === "string" ? "text" : "json", text }),
  );
}

// `screenshot(value)` builds the screenshot's figure (its image arrives later).
export function resultView(result, screenshot) {
  if (result === null || result === undefined) {
    return part("result", "Result", el("p", { class: "empty", text: "No result." }));
  }
  const scalars = [];
  const blocks = [];
  for (const [key, value] of Object.entries(result)) {
    if (key === "screenshot" && value && typeof value.artifact_id === "string") {
      blocks.push(screenshot(value));
    } else if (value !== null && typeof value === "object") {
      blocks.push(folded(key, value, false));
    } else if (typeof value === "string" && (TEXT_KEYS.has(key) || isLong(value))) {
      blocks.push(folded(key, value, true)); // Markdown, text, HTML: shown as text
    } else {
      scalars.push([key, value === null ? null : code(String(value))]);
    }
  }
  return part("result", "Result", fields(scalars), ...blocks);
}

export function errorView(error) {
  if (!error) return null;
  return part(
    "error",
    "Error",
    fields([
      ["code", code(error.code)],
      ["message", el("span", { class: "error-text", text: error.message ?? "" })],
      ["retryable", error.retryable ? "yes" : "no"],
    ]),
    error.details === null || error.details === undefined
      ? null
      : folded("details", error.details, false),
  );
}

export function attemptsView(attempts) {
  if (!attempts.length) {
    return part("attempts", "Attempts", el("p", { class: "empty", text: "No attempt yet." }));
  }
  const items = attempts.map((attempt) =>
    el(
      "li",
      { data: { attempt: attempt.number, outcome: attempt.outcome } },
      el("strong", { text: `#${attempt.number} ` }),
      el("span", {
        class: `status outcome-${attempt.outcome}`,
        data: { field: "outcome" },
        text: attempt.outcome,
      }),
      attempt.error_code ? " " : null,
      attempt.error_code
        ? el("code", { data: { field: "error_code" }, text: attempt.error_code })
        : null,
      el("br"),
      time(attempt.started_at),
      " \u2192 ",
      time(attempt.finished_at),
      attempt.finished_at ? ` (${duration(attempt.started_at, attempt.finished_at)})` : "",
      el("br"),
      el(
        "small",
        {},
        "worker ",
        el("code", { data: { field: "worker" }, text: attempt.worker_id }),
      ),
    ),
  );
  return part("attempts", "Attempts", el("ol", { class: "timeline" }, ...items));
}

export function deliveriesView(deliveries) {
  if (!deliveries.length) {
    const none = el("p", { class: "empty", text: "No webhook delivery." });
    return part("deliveries", "Webhook deliveries", none);
  }
  const head = [
    "event", "url", "status", "attempts", "last answer", "last error", "delivered", "next attempt",
  ];
  const rows = deliveries.map((d) =>
    el(
      "tr",
      { data: { deliveryId: d.id, status: d.status } },
      cell("event", d.event),
      cell("url", el("span", { class: "url", title: d.url, text: d.url })),
      cell("status", el("span", { class: `delivery delivery-${d.status}`, text: d.status })),
      el("td", { class: "num", data: { field: "attempts" } }, num(d.attempts)),
      cell("last_status_code", num(d.last_status_code)),
      cell("last_error", d.last_error ?? DASH),
      cell("delivered_at", time(d.delivered_at)),
      cell("next_attempt_at", time(d.next_attempt_at)),
    ),
  );
  const table = el(
    "table",
    { class: "deliveries" },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows),
  );
  return part("deliveries", "Webhook deliveries", el("div", { class: "scroll" }, table));
}

export function inputView(job) {
  return part("input", "Input", el("pre", { class: "json", text: json(job.input) }));
}

export function eventItem(event) {
  const detail = event.error?.code ?? event.reason ?? (event.progress ? json(event.progress) : "");
  return el(
    "li",
    { data: { type: event.type } },
    time(typeof event.at === "number" ? new Date(event.at * 1000).toISOString() : event.at),
    " ",
    el("strong", { text: event.type }),
    ` attempt ${num(event.attempt)} `,
    detail ? el("code", { text: String(detail) }) : null,
  );
}
