// The dashboard: sign in with an API key (kept in this tab's sessionStorage, sent only as
// `Authorization: Bearer`), then panels read from the API and kept live by /v1/events.
// Routes (the URL's fragment): `#/` the overview, `#/jobs/{id}` a job's page,
// `#/schedules/{id}` the overview with that schedule marked.

import { Api, checkKey, isAbort } from "./api.js";
import { $, $$ } from "./dom.js";
import { JobPage } from "./jobpage.js";
import { JobsPanel } from "./jobs.js";
import { QueuesPanel, WorkersPanel } from "./panels.js";
import { SchedulesPanel } from "./schedules.js";
import { EventStream } from "./sse.js";

const KEY_ITEM = "outrider.apiKey";
const POLL_MS = 5000; // queue and worker samples (the chart's resolution)
const SCHEDULES_MS = 30000;
const COUNTS_DEBOUNCE_MS = 1000; // after events, at most one extra queue read per second
const NOTICE_MS = 8000;

const signIn = $("#sign-in");
const form = $("#sign-in-form");
const keyInput = $("#api-key");
const message = $("#sign-in-message");
const app = $("#app");
const live = $("#live");
const signOutButton = $("#sign-out");
const notice = $("#notice");

let noticeTimer = null;
function notify(text) {
  notice.replaceChildren(text);
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    notice.hidden = true;
  }, NOTICE_MS);
}

const queues = new QueuesPanel();
const workers = new WorkersPanel();
const schedules = new SchedulesPanel(notify, () => session?.refreshSchedules());
const jobs = new JobsPanel(notify);
const jobPage = new JobPage(notify);

let session = null;

function setLive(state, detail) {
  live.dataset.state = state;
  if (state === "reconnecting" && detail) {
    live.textContent = `reconnecting in ${Math.ceil(detail.delay / 1000)} s`;
    live.title = detail.error || "";
  } else {
    live.textContent = state;
    live.title = "";
  }
}

class Session {
  constructor(key) {
    this.controller = new AbortController();
    this.key = key;
    this.api = new Api(key, this.controller.signal, refused);
    this.timers = [];
    this.countsTimer = null;
    this.schedulesTimer = null;
    this.stream = new EventStream("/v1/events", key, {
      onOpen: () => {
        jobs.load();
        this.refreshCounts();
      },
      onEvent: (event) => this.onEvent(event),
      onState: setLive,
      onUnauthorized: refused,
    });
  }

  start() {
    jobs.attach(this.api);
    schedules.attach(this.api);
    jobPage.attach(this.api, this.key);
    route();
    jobs.load(); // and again each time the stream (re)connects, for what it may have missed
    this.refreshCounts();
    this.refreshSchedules();
    this.timers.push(setInterval(() => this.refreshCounts(), POLL_MS));
    this.timers.push(setInterval(() => this.refreshSchedules(), SCHEDULES_MS));
    this.stream.start();
  }

  stop() {
    this.stream.stop();
    this.controller.abort();
    this.timers.forEach(clearInterval);
    clearTimeout(this.countsTimer);
    clearTimeout(this.schedulesTimer);
  }

  onEvent(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    jobs.onEvent(event);
    if (this.countsTimer === null) {
      this.countsTimer = setTimeout(() => {
        this.countsTimer = null;
        this.refreshCounts();
      }, COUNTS_DEBOUNCE_MS);
    }
  }

  async read(path, panel, what) {
    try {
      const body = await this.api.get(path);
      if (session === this) panel.update(body);
    } catch (error) {
      if (!isAbort(error) && session === this) notify(`${what}: ${error.message}`);
    }
  }

  refreshCounts() {
    this.read("/v1/queue", queues, "Queues");
    this.read("/v1/workers", workers, "Workers");
  }

  async refreshSchedules() {
    await this.read("/v1/schedules?limit=200", schedules, "Schedules");
    if (session !== this || schedules.nextFire === null) return;
    // Read again just after the soonest fire time, so "next fire" never shows the past.
    const wait = schedules.nextFire - Date.now() + 1500;
    clearTimeout(this.schedulesTimer);
    if (wait > 0 && wait < SCHEDULES_MS) {
      this.schedulesTimer = setTimeout(() => this.refreshSchedules(), wait);
    }
  }
}

// A 401 on any call: the key was revoked (or never valid); back to the sign-in form.
function refused(reason) {
  if (session) signOut(`The API refused the key: ${reason}`);
}

function enter(key) {
  signIn.hidden = true;
  app.hidden = false;
  signOutButton.hidden = false;
  session = new Session(key);
  session.start();
}

function signOut(text) {
  if (session) session.stop();
  session = null;
  sessionStorage.removeItem(KEY_ITEM);
  jobs.clear();
  jobPage.clear();
  queues.clear();
  workers.clear();
  schedules.clear();
  app.hidden = true;
  signOutButton.hidden = true;
  notice.hidden = true;
  setLive("offline");
  signIn.hidden = false;
  message.textContent = text || "";
  keyInput.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  const button = form.querySelector("button");
  button.disabled = true;
  message.textContent = "Checking the key…";
  try {
    await checkKey(key);
    keyInput.value = "";
    message.textContent = "";
    sessionStorage.setItem(KEY_ITEM, key);
    enter(key);
  } catch (error) {
    message.textContent =
      error.status === 401 ? "That API key was refused." : `Could not sign in: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});

signOutButton.addEventListener("click", () => signOut("Signed out."));

const JOB_ROUTE = /^#\/jobs\/([0-9a-fA-F-]{36})$/;
const SCHEDULE_ROUTE = /^#\/schedules\/([0-9a-fA-F-]{36})$/;

// Shows what the fragment names: a job's page, or the overview.
function route() {
  const job = JOB_ROUTE.exec(location.hash);
  for (const panel of $$(".overview")) panel.hidden = job !== null;
  if (job) {
    if (jobPage.id !== job[1].toLowerCase()) {
      jobPage.open(job[1].toLowerCase(), jobs.filters.fragment());
    }
    window.scrollTo(0, 0);
    return;
  }
  jobPage.close();
  const schedule = SCHEDULE_ROUTE.exec(location.hash);
  schedules.mark(schedule ? schedule[1].toLowerCase() : null);
  if (schedule) return;
  // The list's filters, from `#/?status=...`: a link to a filtered list.
  const query = location.hash.startsWith("#/?") ? location.hash.slice(3) : "";
  if (jobs.filters.fromQuery(new URLSearchParams(query))) jobs.load();
}

window.addEventListener("hashchange", () => {
  if (session) route();
});

const stored = sessionStorage.getItem(KEY_ITEM);
if (stored) enter(stored);
else keyInput.focus();
