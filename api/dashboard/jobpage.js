// The job page (#/jobs/{id}): the job, its attempts and webhook deliveries read from the API,
// its own event stream (GET /v1/jobs/{id}/events) shown live and prompting a fresh read, the
// screenshot fetched with the key as a blob, and Cancel/Retry after a confirmation.

import { isAbort } from "./api.js";
import { $, copyButton, el, onCopyClick } from "./dom.js";
import { jobAction } from "./jobs.js";
import {
  attemptsView,
  deliveriesView,
  errorView,
  eventItem,
  inputView,
  resultView,
  summaryView,
} from "./jobviews.js";
import { EventStream } from "./sse.js";

const RELOAD_DEBOUNCE_MS = 500; // a burst of events (progress) costs one read
const MAX_EVENTS = 200;
const PENDING_POLL_MS = 5000; // a webhook delivery goes on after the job's last event

export class JobPage {
  constructor(notify) {
    this.notify = notify;
    this.section = $("#job-page");
    this.body = $("#job-body");
    this.idText = $("#job-id");
    this.copy = $("#job-copy");
    this.missing = $("#job-missing");
    this.api = null;
    this.key = null;
    this.id = null;
    this.stream = null;
    this.lastEventId = "";
    this.images = new Map(); // artifact id -> object URL
    this.reloadTimer = null;
    this.token = null;
    this.copy.addEventListener("click", (event) => onCopyClick(event));
    this.body.addEventListener("click", (event) => this.onClick(event));
    this.events = el("ol", { class: "events", id: "job-events" });
    this.streamState = el("small", { class: "stream-state" });
    this.eventsPart = el(
      "section",
      { class: "job-part", data: { part: "events" } },
      el("h3", {}, "Events ", this.streamState),
      this.events,
    );
  }

  attach(api, key) {
    this.api = api;
    this.key = key;
  }

  // `back`: the fragment of the list it was opened from.
  open(id, back = "#/") {
    this.close();
    $("#job-back").setAttribute("href", back);
    this.id = id;
    this.section.hidden = false;
    this.idText.textContent = id;
    this.copy.dataset.copy = id;
    this.missing.hidden = true;
    this.events.replaceChildren();
    this.lastEventId = "";
    this.load();
    this.listen();
  }

  close() {
    if (this.stream) this.stream.stop();
    this.stream = null;
    clearTimeout(this.reloadTimer);
    for (const url of this.images.values()) URL.revokeObjectURL(url);
    this.images.clear();
    this.id = null;
    this.token = null;
    this.body.replaceChildren();
    this.section.hidden = true;
  }

  clear() {
    this.close();
    this.api = null;
    this.key = null;
  }

  listen() {
    const id = this.id;
    if (this.stream) this.stream.stop();
    const stream = new EventStream(`/v1/jobs/${encodeURIComponent(id)}/events`, this.key, {
      onOpen: () => {},
      onEvent: (message) => this.onEvent(message),
      onState: (state) => {
        this.eventsPart.dataset.state = state;
        this.streamState.textContent = state === "ended" ? "(the job has ended)" : `(${state})`;
      },
      onUnauthorized: () => {},
      onEnd: () => {},
    });
    stream.lastEventId = this.lastEventId;
    this.stream = stream;
    stream.start();
  }

  // Reads the page again soon (after a burst of events, once).
  reloadSoon(delay = RELOAD_DEBOUNCE_MS) {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load(), delay);
  }

  onEvent(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (message.id) this.lastEventId = message.id;
    this.events.append(eventItem(event));
    while (this.events.childElementCount > MAX_EVENTS) this.events.firstElementChild.remove();
    this.reloadSoon();
  }

  // Reads the job, its attempts and deliveries (and its schedule) and shows them.
  async load() {
    const api = this.api;
    const id = this.id;
    const token = {};
    this.token = token;
    const path = `/v1/jobs/${encodeURIComponent(id)}`;
    try {
      const [job, attempts, deliveries] = await Promise.all([
        api.get(path),
        api.get(`${path}/attempts`),
        api.get(`${path}/deliveries`),
      ]);
      const schedule = job.schedule_id ? await this.schedule(job.schedule_id) : null;
      if (this.token !== token) return;
      this.show(job, attempts.items, deliveries.items, schedule);
      if (deliveries.items.some((d) => d.status === "pending")) this.reloadSoon(PENDING_POLL_MS);
    } catch (error) {
      if (isAbort(error) || this.token !== token) return;
      if (error.status === 404) {
        this.missing.hidden = false;
        this.body.replaceChildren();
      } else this.notify(`Job ${id}: ${error.message}`);
    }
  }

  async schedule(id) {
    try {
      return await this.api.get(`/v1/schedules/${encodeURIComponent(id)}`);
    } catch (error) {
      if (error.status === 404) return { id, deleted: true };
      throw error;
    }
  }

  show(job, attempts, deliveries, schedule) {
    const actions = el("p", { class: "job-actions" });
    if (job.status === "failed" || job.status === "cancelled") {
      actions.append(el("button", { type: "button", data: { action: "retry" }, text: "Retry" }));
    }
    if (job.status === "queued" || job.status === "running") {
      actions.append(el("button", { type: "button", data: { action: "cancel" }, text: "Cancel" }));
    }
    this.body.dataset.status = job.status;
    this.body.replaceChildren(
      summaryView(job, scheduleLink(schedule), actions),
      errorView(job.error) ?? "",
      resultView(job.result, (shot) => this.screenshot(shot)),
      attemptsView(attempts),
      this.eventsPart,
      deliveriesView(deliveries),
      inputView(job),
    );
  }

  screenshot(shot) {
    const img = el("img", { alt: "Screenshot of the page", class: "screenshot" });
    const figure = el(
      "figure",
      { class: "shot", data: { key: "screenshot", artifactId: shot.artifact_id } },
      img,
      el(
        "figcaption",
        {},
        "screenshot ",
        el("code", { text: shot.artifact_id }),
        " ",
        copyButton(shot.artifact_id),
      ),
    );
    const known = this.images.get(shot.artifact_id);
    if (known) img.src = known;
    else this.fetchImage(shot.artifact_id, img);
    return figure;
  }

  // The artifact API wants the key in a header, so an <img src> cannot load it: fetch the
  // bytes and show them through an object URL (CSP: img-src blob:).
  async fetchImage(artifactId, img) {
    const id = this.id;
    try {
      const response = await fetch(`/v1/artifacts/${encodeURIComponent(artifactId)}`, {
        headers: this.api.headers(),
        cache: "no-store",
        credentials: "omit",
        signal: this.api.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      if (this.id !== id) return;
      const url = URL.createObjectURL(blob);
      this.images.set(artifactId, url);
      img.src = url;
    } catch (error) {
      if (!isAbort(error)) img.alt = `The screenshot could not be read: ${error.message}`;
    }
  }

  async onClick(event) {
    if (await onCopyClick(event)) return;
    const button = event.target.closest("button[data-action]");
    if (!button || !this.api || !this.id) return;
    const id = this.id;
    await jobAction(this.api, id, button.dataset.action, button, this.notify, () => 0, (job) => {
      if (this.id !== id) return;
      this.load();
      if (job && job.status === "queued") this.listen(); // a retried job has events again
    });
  }
}

function scheduleLink(schedule) {
  if (!schedule) return null;
  if (schedule.deleted) return el("span", {}, el("code", { text: schedule.id }), " (deleted)");
  return el(
    "a",
    { href: `#/schedules/${encodeURIComponent(schedule.id)}`, data: { part: "schedule" } },
    el("code", { text: schedule.cron }),
    ` ${schedule.enabled ? "" : "(paused) "}`,
    el("code", { text: schedule.id.slice(0, 8) }),
  );
}
