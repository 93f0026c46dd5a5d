// The overview: counts per state and the searchable, filterable, sortable agent table.
import { STARTING, ago, el, leaseLeft } from "./dom.js";

const SORT_KEYS = {
  agent_id: (a) => a.agent_id,
  state: (a) => a.state,
  lease: (a) => leaseLeft(a),
  last_round_at: (a) => a.last_round_at ?? "",
  decision: (a) => a.position?.decision ?? "",
  reason: (a) => failureReason(a) ?? "",
};

export function failureReason(agent) {
  if (agent.state === "attested") return null;
  return agent.reason;
}

export class FleetTable {
  constructor({ table, empty, search, stateFilter, counts, onOpen }) {
    this.body = table.querySelector("tbody");
    this.table = table;
    this.empty = empty;
    this.search = search;
    this.stateFilter = stateFilter;
    this.counts = counts;
    this.onOpen = onOpen;
    this.agents = new Map();
    this.sort = { key: "agent_id", descending: false };
    search.addEventListener("input", () => this.render());
    stateFilter.addEventListener("change", () => this.render());
    for (const button of table.querySelectorAll("th button")) {
      button.addEventListener("click", () => {
        const key = button.dataset.sort;
        this.sort = { key, descending: this.sort.key === key ? !this.sort.descending : false };
        this.render();
      });
    }
    for (const button of counts.querySelectorAll("button[data-count]")) {
      button.addEventListener("click", () => {
        const state = button.dataset.count;
        this.stateFilter.value = state === "starting" || this.stateFilter.value === state ? "" : state;
        this.render();
      });
    }
  }

  replaceAll(agents) {
    this.agents = new Map(agents.map((agent) => [agent.agent_id, agent]));
    this.render();
  }

  // An event arrived before the next full read: show its state at once.
  applyEvent(event) {
    const agent = this.agents.get(event.agent_id);
    if (!agent) return false;
    if (event.type === "agent_notice") return true;  // no transition: state and cause stand
    this.agents.set(event.agent_id, {
      ...agent,
      state: event.to_state,
      reason: event.reason,
      message: event.message,
      details: event.details,
      state_since: event.at,
    });
    this.render();
    return true;
  }

  render() {
    const now = Date.now();
    const query = this.search.value.trim().toLowerCase();
    const wanted = this.stateFilter.value;
    const key = SORT_KEYS[this.sort.key];
    const rows = [...this.agents.values()]
      .filter((a) => !wanted || a.state === wanted)
      .filter((a) => !query || [a.agent_id, a.state, a.reason, a.message, a.policy, a.position?.decision]
        .some((value) => value && String(value).toLowerCase().includes(query)))
      .sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        const order = x < y ? -1 : x > y ? 1 : a.agent_id.localeCompare(b.agent_id);
        return this.sort.descending ? -order : order;
      });
    this.body.replaceChildren(...rows.map((agent) => this.row(agent, now)));
    this.empty.hidden = rows.length > 0;
    for (const th of this.table.querySelectorAll("th")) {
      const sorted = th.querySelector("button").dataset.sort === this.sort.key;
      th.setAttribute("aria-sort", sorted ? (this.sort.descending ? "descending" : "ascending") : "none");
    }
    this.renderCounts();
  }

  row(agent, now) {
    const left = leaseLeft(agent, now);
    const decision = agent.position?.decision ?? "–";
    const reason = failureReason(agent);
    const tr = el("tr", { "data-agent-id": agent.agent_id, tabindex: 0, class: `state-${agent.state}` },
      el("td", {}, agent.agent_id),
      el("td", {}, el("span", { class: `badge ${agent.state}`, "data-state": agent.state }, agent.state)),
      el("td", { class: "num" }, agent.state === "attested" ? `${left.toFixed(0)} s` : "–"),
      el("td", { title: agent.last_round_at ?? "" }, ago(agent.last_round_at, now)),
      el("td", {}, el("span", { class: `decision ${decision}` }, decision)),
      el("td", { class: "reason", title: agent.message ?? "" }, reason ?? ""),
    );
    tr.addEventListener("click", () => this.onOpen(agent.agent_id));
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.onOpen(agent.agent_id);
      }
    });
    return tr;
  }

  renderCounts() {
    const counts = { starting: 0 };
    for (const agent of this.agents.values()) {
      const state = STARTING.has(agent.state) ? "starting" : agent.state;
      counts[state] = (counts[state] ?? 0) + 1;
    }
    for (const button of this.counts.querySelectorAll("button[data-count]")) {
      button.querySelector("b").textContent = String(counts[button.dataset.count] ?? 0);
      button.setAttribute("aria-pressed", String(this.stateFilter.value === button.dataset.count));
    }
  }
}
