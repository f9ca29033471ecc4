// The job list's controls: search (id or URL), statuses (combined), kind, agent, and the
// pages (keyset cursors: a stack of the cursors that led to the pages before this one).
// The filters are also the fragment's query (`#/?status=failed&q=example.com`), so a
// filtered list is a link, and "All jobs" on a job's page goes back to it.

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
    this.agentId = ""; // kept apart from the select, whose options arrive later
    this.cursor = null; // the cursor of the page shown (null: the newest)
    this.before = []; // the cursors of the pages before it
    this.next = null;
    $("#job-search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.q = this.search.value.trim();
      this.changed();
    });
    this.agent.addEventListener("change", () => {
      this.agentId = this.agent.value;
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
    this.agentId = "";
    this.agent.replaceChildren(el("option", { value: "", text: "any agent" }));
    this.go(null, [], false);
  }

  // The agents of the select, from GET /v1/agents (the first 200); an agent a link names
  // that is not among them is kept, under its id.
  setAgents(agents) {
    const options = agents.map((agent) => el("option", { value: agent.id, text: agent.name }));
    if (this.agentId && !agents.some((agent) => agent.id === this.agentId)) {
      options.push(el("option", { value: this.agentId, text: this.agentId }));
    }
    this.agent.replaceChildren(el("option", { value: "", text: "any agent" }), ...options);
    this.agent.value = this.agentId;
  }

  // The fragment of the list as filtered now.
  fragment() {
    const query = this.filterQuery();
    return query.size ? `#/?${query}` : "#/";
  }

  filterQuery() {
    const query = new URLSearchParams();
    for (const status of this.selectedStatuses()) query.append("status", status);
    if (this.kind.value) query.set("kind", this.kind.value);
    if (this.agentId) query.set("agent_id", this.agentId);
    if (this.q) query.set("q", this.q);
    return query;
  }

  // Takes the filters of a fragment's query; true if they differ from the ones shown.
  fromQuery(query) {
    const kinds = [...this.kind.options].map((option) => option.value);
    const kind = kinds.includes(query.get("kind")) ? query.get("kind") : "";
    const wanted = new URLSearchParams();
    const statuses = query.getAll("status");
    for (const box of this.statuses.querySelectorAll("input")) {
      if (statuses.includes(box.value)) wanted.append("status", box.value);
    }
    if (kind) wanted.set("kind", kind);
    if (query.get("agent_id")) wanted.set("agent_id", query.get("agent_id"));
    if (query.get("q")) wanted.set("q", query.get("q").trim());
    if (wanted.toString() === this.filterQuery().toString()) return false;
    for (const box of this.statuses.querySelectorAll("input")) {
      box.checked = statuses.includes(box.value);
    }
    this.kind.value = kind;
    this.agentId = wanted.get("agent_id") || "";
    if (this.agentId && ![...this.agent.options].some((o) => o.value === this.agentId)) {
      this.agent.append(el("option", { value: this.agentId, text: this.agentId }));
    }
    this.agent.value = this.agentId;
    this.q = wanted.get("q") || "";
    this.search.value = this.q;
    this.go(null, [], false);
    return true;
  }

  selectedStatuses() {
    return [...this.statuses.querySelectorAll("input:checked")].map((box) => box.value);
  }

  changed() {
    history.replaceState(null, "", this.fragment());
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
    const query = this.filterQuery();
    query.set("limit", String(LIMIT));
    if (this.cursor) query.set("cursor", this.cursor);
    return query;
  }

  // What POST /v1/jobs/retry takes to retry the failed jobs these filters find.
  retryBody(limit) {
    const body = { limit };
    if (this.kind.value) body.kind = this.kind.value;
    if (this.agentId) body.agent_id = this.agentId;
    if (this.q) body.q = this.q;
    return body;
  }

  describe() {
    const parts = [];
    if (this.kind.value) parts.push(`kind ${this.kind.value}`);
    if (this.agentId) parts.push(`agent ${this.agent.selectedOptions[0]?.textContent}`);
    if (this.q) parts.push(`matching “${this.q}”`);
    return parts.length ? parts.join(", ") : "all";
  }

  // Whether a job the page does not show belongs at its top: a new job (its first event,
  // `queued`, not a retry of an old one) on the newest page, if the filters let it (events
  // carry no agent or URL). Events of older jobs never reorder the page.
  admits(event) {
    if (event.type !== "queued" || event.reason === "retry") return false;
    if (!this.firstPage || this.q || this.agentId) return false;
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
