// A small time-series chart on <canvas>: queue depth (ready, deferred, running; left axis)
// and throughput (jobs/s; right axis) from the samples of GET /v1/queue.

export const SERIES = [
  { key: "ready", label: "ready", axis: "depth", color: "--series-ready" },
  { key: "deferred", label: "deferred", axis: "depth", color: "--series-deferred" },
  { key: "running", label: "running", axis: "depth", color: "--series-running" },
  { key: "throughput", label: "jobs/s (right axis)", axis: "rate", color: "--series-rate" },
];

const PAD = { left: 34, right: 40, top: 8, bottom: 18 };

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function label(value) {
  return value >= 10 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(1);
}

function clock(ms) {
  const date = new Date(ms);
  return [date.getHours(), date.getMinutes(), date.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
}

export function drawChart(canvas, samples) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (width === 0 || height === 0) return;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const style = getComputedStyle(canvas);
  const ink = style.getPropertyValue("--chart-ink").trim() || "#888";
  const grid = style.getPropertyValue("--chart-grid").trim() || "#ccc";
  ctx.font = "10px system-ui, sans-serif";

  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const depthMax = niceMax(Math.max(0, ...samples.flatMap((s) => [s.ready, s.deferred, s.running])));
  const rateMax = niceMax(Math.max(0, ...samples.map((s) => s.throughput)));
  const t0 = samples.length ? samples[0].t : 0;
  const t1 = samples.length ? samples[samples.length - 1].t : 1;
  const span = Math.max(t1 - t0, 1);
  const x = (t) => PAD.left + ((t - t0) / span) * plotW;
  const y = (value, max) => PAD.top + plotH - (value / max) * plotH;

  ctx.strokeStyle = grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = ink;
  for (const fraction of [0, 0.5, 1]) {
    const gy = PAD.top + plotH - fraction * plotH;
    ctx.beginPath();
    ctx.moveTo(PAD.left, gy);
    ctx.lineTo(PAD.left + plotW, gy);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(label(depthMax * fraction), PAD.left - 4, gy + 3);
    ctx.textAlign = "left";
    ctx.fillText(label(rateMax * fraction), PAD.left + plotW + 4, gy + 3);
  }
  if (samples.length === 0) return;
  ctx.textAlign = "left";
  ctx.fillText(clock(t0), PAD.left, height - 4);
  ctx.textAlign = "right";
  ctx.fillText(clock(t1), PAD.left + plotW, height - 4);

  for (const series of SERIES) {
    const max = series.axis === "depth" ? depthMax : rateMax;
    ctx.strokeStyle = style.getPropertyValue(series.color).trim() || ink;
    ctx.lineWidth = series.axis === "rate" ? 1.5 : 2;
    ctx.setLineDash(series.axis === "rate" ? [4, 3] : []);
    ctx.beginPath();
    samples.forEach((sample, index) => {
      const px = x(sample.t);
      const py = y(sample[series.key], max);
      if (index === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
}
