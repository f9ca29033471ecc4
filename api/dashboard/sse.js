// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// stream is read with a ReadableStream reader and parsed here (the WHATWG "event stream"
// rules: id/event/data/retry fields, ":" comments, CR, LF or CRLF line ends).

export class SseParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.type = "";
    this.lastEventId = "";
    this.retry = null;
    this.started = false;
    this.afterCR = false;
  }

  // Feeds decoded text; returns the events completed by it, in order.
  push(text) {
    this.buffer += text;
    if (!this.started && this.buffer.length > 0) {
      this.started = true;
      if (this.buffer.charCodeAt(0) === 0xfeff) this.buffer = this.buffer.slice(1);
    }
    // A CR that ended the previous chunk may have been the first half of a CRLF.
    if (this.afterCR && this.buffer.startsWith("\n")) this.buffer = this.buffer.slice(1);
    if (this.buffer.length > 0) this.afterCR = false;
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.afterCR = match[0] === "\r" && this.buffer.length === 0;
      const event = this.line(line);
      if (event !== null) events.push(event);
    }
    return events;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment (the server's heartbeat)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }

  dispatch() {
    const data = this.data;
    const type = this.type || "message";
    this.data = [];
    this.type = "";
    if (data.length === 0) return null;
    return { type, data: data.join("\n"), id: this.lastEventId };
  }
}

const BASE_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;
const STALL_MS = 60000; // no byte (not even a heartbeat) for this long: reconnect

// A stream that reconnects after a drop with Last-Event-ID and a growing, jittered delay.
// Callbacks: onOpen(), onEvent(event), onState(state, detail), onUnauthorized(message), and
// for a stream that ends by design (one job's: it closes after the job's last event, or
// answers 204 when nothing is left), onEnd(): then an end is not a drop.
export class EventStream {
  constructor(url, key, callbacks) {
    this.url = url;
    this.key = key;
    this.callbacks = callbacks;
    this.lastEventId = "";
    this.failures = 0;
    this.baseDelay = BASE_DELAY_MS;
    this.stopped = false;
    this.controller = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }

  async connect() {
    if (this.stopped) return;
    this.callbacks.onState("connecting");
    const controller = new AbortController();
    this.controller = controller;
    let stall = null;
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => controller.abort(), STALL_MS);
    };
    try {
      arm();
      const headers = { Authorization: `Bearer ${this.key}`, Accept: "text/event-stream" };
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      const response = await fetch(this.url, {
        headers,
        cache: "no-store",
        credentials: "omit",
        signal: controller.signal,
      });
      if (response.status === 401) {
        this.stopped = true;
        const body = await response.json().catch(() => null);
        this.callbacks.onUnauthorized(body?.error?.message || "401 Unauthorized");
        return;
      }
      // A resume point the server no longer accepts: start from now (the caller re-reads).
      if (response.status === 422) this.lastEventId = "";
      // A finite stream with nothing left (204), or of a job that is gone (404): done.
      if ((response.status === 204 || response.status === 404) && this.callbacks.onEnd) {
        return this.end();
      }
      if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status}`);
      this.failures = 0;
      this.callbacks.onState("live");
      this.callbacks.onOpen();
      await this.read(response.body, arm);
      if (!this.stopped && this.callbacks.onEnd) return this.end();
      if (!this.stopped) throw new Error("the stream ended");
    } catch (error) {
      if (this.stopped) return;
      this.failures += 1;
      const delay = this.delay();
      this.callbacks.onState("reconnecting", { delay, error: String(error.message || error) });
      this.timer = setTimeout(() => this.connect(), delay);
    } finally {
      clearTimeout(stall);
    }
  }

  end() {
    this.stopped = true;
    this.callbacks.onState("ended");
    this.callbacks.onEnd();
  }

  async read(body, arm) {
    const parser = new SseParser();
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.stopped) return;
      arm();
      for (const event of parser.push(value)) {
        if (event.id) this.lastEventId = event.id;
        this.callbacks.onEvent(event);
      }
      if (parser.retry !== null) this.baseDelay = parser.retry;
    }
  }

  delay() {
    const exp = Math.min(MAX_DELAY_MS, this.baseDelay * 2 ** Math.min(this.failures - 1, 10));
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }
}
