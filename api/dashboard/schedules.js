// The schedules panel: GET /v1/schedules, with Pause / Resume (PATCH `enabled`) and Run now
// (POST /v1/schedules/{id}/run, confirmed). `#/schedules/{id}` marks that schedule's row.

import { isAbort } from "./api.js";
import { $, cell, confirmAction, DASH, el, numCell, replaceRows, time } from "./dom.js";
import { jobLink } from "./jobs.js";

function jobSummary(job) {
  if (!job || typeof job !== "object") return DASH;
  const input = job.input && typeof job.input === "object" ? job.input : {};
  const target = input.url ?? (Array.isArray(input.urls) ? input.urls[0] : undefined);
  return target ? `${job.kind} ${target}` : String(job.kind ?? DASH);
}

function actions(schedule) {
  const toggle = schedule.enabled
    ? el("button", { type: "button", data: { action: "pause" }, text: "Pause" })
    : el("button", { type: "button", data: { action: "resume" }, text: "Resume" });
  const run = el("button", { type: "button", data: { action: "run" }, text: "Run now" });
  return el("td", { class: "actions" }, toggle, " ", run);
}

export class SchedulesPanel {
  constructor(notify, onChanged) {
    this.notify = notify;
    this.onChanged = onChanged;
    this.tbody = $("#schedules tbody");
    this.empty = $("#schedules-empty");
    this.nextFire = null;
    this.api = null;
    this.marked = null;
    this.tbody.addEventListener("click", (event) => this.onClick(event));
  }

  attach(api) {
    this.api = api;
  }

  clear() {
    this.api = null;
    this.tbody.replaceChildren();
    this.empty.hidden = true;
    this.nextFire = null;
  }

  // Marks (and scrolls to) one schedule's row; null unmarks.
  mark(id) {
    this.marked = id;
    for (const row of this.tbody.rows) {
      row.classList.toggle("marked", row.dataset.scheduleId === id);
      if (row.dataset.scheduleId === id) row.scrollIntoView({ block: "center" });
    }
  }

  update(body) {
    const items = Array.isArray(body.items) ? body.items : [];
    const fires = items.flatMap((s) => (s.next_fire_times || []).slice(0, 1).map(Date.parse));
    this.nextFire = fires.length ? Math.min(...fires) : null;
    this.empty.hidden = items.length > 0;
    replaceRows(this.tbody, items.map((schedule) => this.row(schedule)));
    if (this.marked) this.mark(this.marked);
  }

  row(schedule) {
    const next = (schedule.next_fire_times || [])[0];
    return el(
      "tr",
      { data: { scheduleId: schedule.id, enabled: schedule.enabled ? "yes" : "no" } },
      cell("id", el("code", { title: schedule.id, text: schedule.id.slice(0, 8) })),
      cell("cron", el("code", { text: schedule.cron })),
      cell("timezone", schedule.timezone),
      cell("enabled", schedule.enabled ? "yes" : "paused"),
      cell("job", jobSummary(schedule.job)),
      cell("next_fire", next && schedule.enabled ? time(next) : DASH),
      numCell("missed_count", schedule.missed_count),
      actions(schedule),
    );
  }

  async onClick(event) {
    const button = event.target.closest("button[data-action]");
    const api = this.api;
    if (!button || !api) return;
    const id = button.closest("tr").dataset.scheduleId;
    const action = button.dataset.action;
    const path = `/v1/schedules/${encodeURIComponent(id)}`;
    if (action === "run" && !(await confirmAction(`Run schedule ${id}'s job now?`, "Run now"))) {
      return;
    }
    button.disabled = true;
    try {
      if (action === "run") {
        const job = await api.post(`${path}/run`);
        this.notify(el("span", {}, "Schedule fired job ", jobLink(job.id), "."));
      } else {
        await api.patch(path, { enabled: action === "resume" });
      }
      if (this.api === api) this.onChanged();
    } catch (error) {
      if (isAbort(error) || this.api !== api) return;
      this.notify(`${button.textContent} failed: ${error.message}`);
      button.disabled = false;
    }
  }
}
