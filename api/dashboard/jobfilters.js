// The job list's controls: search (id or URL), statuses (combined), kind, agent, and the
// pages (keyset cursors: a stack of the cursors that led to the pages before this one).

import { $, el } from "./dom.js";

export const LIMIT = 50;

export class JobFilters {
  constructor(onChange) {
    this.onChange = onChange;
    this.search = $("#job-q");
    this.statuses = $("#job-statuses");
    this.kind = $("#job-kind");
    this.agent = $("#job-agent");
    this.older = $("#jobs-older");
    this.newer = $("#jobs-newer");
    this.newest = $("#jobs-newest");
    this.pageLabel = $("#jobs-page");
    this.q = "";
    this.cursor = null; // the cursor of the page shown (null: the newest)
    this.before = []; // the cursors of the pages before it
    this.next = null;
    $("#job-search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.q = this.search.value.trim();
      this.changed();
    });
    for (const input of [this.statuses, this.kind, this.agent]) {
      input.addEventListener("change", () => this.changed());
    }
    this.older.addEventListener("click", () => this.go(this.next, [...this.before, this.cursor]));
    this.newer.addEventListener("click", () => {
      const before = this.before.slice(0, -1);
      this.go(this.before[this.before.length - 1] ?? null, before);
    });
    this.newest.addEventListener("click", () => this.go(null, []));
  }

  clear() {
    this.q = "";
    this.search.value = "";
    for (const box of this.statuses.querySelectorAll("input")) box.checked = false;
    this.kind.value = "";
    this.agent.replaceChildren(el("option", { value: "", text: "any agent" }));
    this.go(null, [], false);
  }

  // The agents of the select, from GET /v1/agents (the first 200).
  setAgents(agents) {
    const chosen = this.agent.value;
    const options = agents.map((agent) => el("option", { value: agent.id, text: agent.name }));
    this.agent.replaceChildren(el("option", { value: "", text: "any agent" }), ...options);
    this.agent.value = chosen;
  }

  selectedStatuses() {
    return [...this.statuses.querySelectorAll("input:checked")].map((box) => box.value);
  }

  changed() {
    this.go(null, []);
  }

  go(cursor, before, notify = true) {
    this.cursor = cursor;
    this.before = before;
    this.next = null;
    this.showPager();
    if (notify) this.onChange();
  }

  get firstPage() {
    return this.cursor === null;
  }

  // The query of the page shown.
  query() {
    const query = new URLSearchParams({ limit: String(LIMIT) });
    for (const status of this.selectedStatuses()) query.append("status", status);
    if (this.kind.value) query.set("kind", this.kind.value);
    if (this.agent.value) query.set("agent_id", this.agent.value);
    if (this.q) query.set("q", this.q);
    if (this.cursor) query.set("cursor", this.cursor);
    return query;
  }

  // What POST /v1/jobs/retry takes to retry the failed jobs these filters find.
  retryBody(limit) {
    const body = { limit };
    if (this.kind.value) body.kind = this.kind.value;
    if (this.agent.value) body.agent_id = this.agent.value;
    if (this.q) body.q = this.q;
    return body;
  }

  describe() {
    const parts = [];
    if (this.kind.value) parts.push(`kind ${this.kind.value}`);
    if (this.agent.value) parts.push(`agent ${this.agent.selectedOptions[0].textContent}`);
    if (this.q) parts.push(`matching “${this.q}”`);
    return parts.length ? parts.join(", ") : "all";
  }

  // Whether a job the page does not show belongs at its top: a new job (its first event,
  // `queued`, not a retry of an old one) on the newest page, if the filters let it (events
  // carry no agent or URL). Events of older jobs never reorder the page.
  admits(event) {
    if (event.type !== "queued" || event.reason === "retry") return false;
    if (!this.firstPage || this.q || this.agent.value) return false;
    const statuses = this.selectedStatuses();
    if (statuses.length && !statuses.includes(event.status)) return false;
    return !this.kind.value || this.kind.value === event.kind;
  }

  setNext(next) {
    this.next = next;
    this.showPager();
  }

  showPager() {
    this.older.disabled = !this.next;
    this.newer.disabled = this.firstPage;
    this.newest.disabled = this.firstPage;
    this.pageLabel.textContent = `page ${this.before.length + 1}`;
  }
}
