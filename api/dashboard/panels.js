// The read-only panels: queues (with the depth/throughput chart) and workers.
// Every number shown is a field of the API's answer, unchanged.

import { drawChart, SERIES } from "./chart.js";
import { $, cell, DASH, el, num, numCell, rate, replaceRows, seconds, time } from "./dom.js";

const KEEP_MS = 15 * 60 * 1000;
const WINDOWS = ["1m", "5m", "60m"];

function windows(field, counts) {
  const parts = [];
  WINDOWS.forEach((name, index) => {
    if (index > 0) parts.push(" / ");
    const value = counts ? counts[name] : null;
    parts.push(el("span", { data: { window: name, value: value ?? "" }, text: num(value) }));
  });
  return el("td", { class: "num", data: { field } }, ...parts);
}

export class QueuesPanel {
  constructor() {
    this.tbody = $("#queues tbody");
    this.charts = $("#charts");
    this.at = $("#queues-at");
    this.samples = new Map();
    this.canvases = new Map();
    this.lastAt = 0;
    window.addEventListener("resize", () => this.redraw());
  }

  clear() {
    this.tbody.replaceChildren();
    this.charts.replaceChildren();
    this.at.textContent = "";
    this.samples.clear();
    this.canvases.clear();
    this.lastAt = 0;
  }

  update(body) {
    const queues = Array.isArray(body.queues) ? body.queues : [];
    const t = Date.parse(body.at) || Date.now();
    if (t < this.lastAt) return; // an answer overtaken by a newer one
    this.lastAt = t;
    this.at.replaceChildren("as of ", time(body.at));
    replaceRows(this.tbody, queues.map((queue) => this.row(queue)));
    for (const queue of queues) {
      const samples = this.samples.get(queue.name) || [];
      const last = samples[samples.length - 1];
      if (!last || t > last.t) {
        samples.push({
          t,
          ready: queue.ready,
          deferred: queue.deferred,
          running: queue.running,
          throughput: queue.throughput_per_s,
        });
      }
      while (samples.length > 2 && samples[0].t < t - KEEP_MS) samples.shift();
      this.samples.set(queue.name, samples);
      this.chart(queue.name);
    }
  }

  row(queue) {
    return el(
      "tr",
      { data: { queue: queue.name, paused: String(Boolean(queue.paused)) } },
      cell("name", el("code", { text: queue.name })),
      cell("paused", queue.paused ? "paused" : "active"),
      numCell("ready", queue.ready),
      numCell("deferred", queue.deferred),
      numCell("running", queue.running),
      numCell("oldest_ready_age_s", queue.oldest_ready_age_s, seconds(queue.oldest_ready_age_s)),
      windows("completed", queue.completed),
      windows("failed", queue.failed),
      numCell("throughput_per_s", queue.throughput_per_s, rate(queue.throughput_per_s)),
      numCell("workers", queue.workers),
    );
  }

  chart(name) {
    let canvas = this.canvases.get(name);
    if (!canvas) {
      const legend = SERIES.map((series) =>
        el("span", { class: `legend legend-${series.key}` }, series.label),
      );
      canvas = el("canvas", {
        class: "chart",
        role: "img",
        "aria-label": `Depth and throughput of queue ${name} over time`,
      });
      const figure = el(
        "figure",
        { class: "chart-card", data: { queue: name } },
        el("figcaption", {}, el("code", { text: name }), " ", ...legend),
        canvas,
      );
      this.charts.append(figure);
      this.canvases.set(name, canvas);
    }
    drawChart(canvas, this.samples.get(name) || []);
  }

  redraw() {
    for (const name of this.canvases.keys()) this.chart(name);
  }
}

export class WorkersPanel {
  constructor() {
    this.tbody = $("#workers tbody");
  }

  clear() {
    this.tbody.replaceChildren();
  }

  update(body) {
    const workers = Array.isArray(body.workers) ? body.workers : [];
    replaceRows(
      this.tbody,
      workers.map((worker) =>
        el(
          "tr",
          { data: { workerId: worker.id } },
          cell(
            "id",
            el("code", { text: worker.id }),
            el("small", { text: ` ${worker.host ?? ""} pid ${num(worker.pid)}` }),
          ),
          cell("queue", el("code", { text: worker.queue })),
          numCell("concurrency", worker.concurrency),
          numCell("jobs_running", worker.jobs_running),
          numCell("jobs_done", worker.jobs_done),
          numCell("jobs_failed", worker.jobs_failed),
          cell("started_at", time(worker.started_at)),
          cell("last_heartbeat", time(worker.last_heartbeat)),
          cell("version", worker.version ?? DASH),
        ),
      ),
    );
  }
}
