// One agent: identity, the exact failure, the timeline of transitions, the evidence records
// behind the verdicts, the tokens issued, and the operator actions (admins only).
import { ApiError, api } from "./api.js";
import { $, el, time } from "./dom.js";

const ACTIONS_BY_STATE = {
  pause: (s) => s !== "paused",
  resume: (s) => s === "paused",
  readmit: (s) => s === "failed",
  refresh: () => true,
};

export class AgentDetail {
  constructor({ isAdmin, onChanged }) {
    this.section = $("#detail");
    this.isAdmin = isAdmin;
    this.onChanged = onChanged;
    this.agentId = null;
    $("#detail-close").addEventListener("click", () => this.close());
    this.section.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    for (const button of this.section.querySelectorAll("[data-action]")) {
      button.addEventListener("click", () => this.act(button.dataset.action));
    }
  }

  async open(agentId) {
    this.agentId = agentId;
    this.section.hidden = false;
    $("#detail-title").textContent = agentId;
    $("#record").hidden = true;
    await this.refresh();
    this.section.focus();
  }

  close() {
    this.agentId = null;
    this.section.hidden = true;
  }

  async refresh() {
    const agentId = this.agentId;
    if (!agentId) return;
    const path = `/agents/${encodeURIComponent(agentId)}`;
    const [status, identity, events, rounds, tokens] = await Promise.all([
      api(path), api(`${path}/identity`), api(`${path}/events`), api(`${path}/rounds?limit=1000`),
      api(`${path}/tokens`),
    ]);
    if (agentId !== this.agentId) return;
    this.showStatus(status);
    this.showIdentity(identity);
    this.showTimeline(events.events);
    this.showRounds(rounds.items);
    this.showTokens(tokens.tokens);
  }

  showStatus(status) {
    const state = $("#detail-state");
    state.replaceChildren(
      el("span", { class: `badge ${status.state}`, "data-state": status.state }, status.state),
      ` since ${time(status.state_since)}; policy ${status.policy}; last round ${time(status.last_round_at)}; ` +
        `last passed ${time(status.last_passed_at)}`,
      status.state === "attested" ? `; lease ${status.lease_remaining_seconds.toFixed(0)} s left` : "",
    );
    const failure = $("#detail-failure");
    failure.hidden = status.state === "attested" || !status.reason;
    const details = Object.entries(status.details ?? {});
    failure.replaceChildren(
      el("p", {}, el("strong", {}, status.reason ?? ""), status.message ? `: ${status.message}` : ""),
      details.length ? el("dl", {}, ...details.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])) : null,
    );
    const actions = $("#actions");
    actions.hidden = !this.isAdmin();
    for (const button of actions.querySelectorAll("[data-action]")) {
      button.disabled = !ACTIONS_BY_STATE[button.dataset.action](status.stored_state);
    }
  }

  showIdentity(identity) {
    const rows = [
      ["policy", identity.policy],
      ["agent API", identity.agent_url],
      ["EK certificate SHA-256", identity.ek_certificate_sha256 ?? "not recorded"],
      ["AK SHA-256 (TPM public)", identity.ak_sha256],
      ["location key SHA-256", identity.location_key_sha256 ?? "none (no geofencing)"],
      ["TLS certificate SHA-256", identity.tls_certificate_sha256],
    ];
    $("#identity").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: "mono" }, v)]));
  }

  showTimeline(events) {
    $("#timeline").replaceChildren(...events.map((event) =>
      el("li", { class: `event ${event.to_state}` },
        el("time", { datetime: event.at }, time(event.at)), " ",
        el("span", { class: `badge ${event.from_state}` }, event.from_state), " → ",
        el("span", { class: `badge ${event.to_state}` }, event.to_state), " ",
        event.reason ?? "", event.message ? `: ${event.message}` : "")));
  }

  showRounds(items) {
    const rows = items.slice(-50).reverse().map((item) => {
      if (item.kind === undefined || item.count !== undefined) {
        return el("tr", { class: "fold" }, el("td", {}, `${item.first_seq}–${item.last_seq}`),
          el("td", {}, time(item.last_at)), el("td", {}, "fold"),
          el("td", {}, Object.entries(item.outcomes).map(([k, v]) => `${v} ${k}`).join(", ")),
          el("td", {}, ""), el("td", {}, "digests"));
      }
      const button = el("button", { type: "button", class: "link" }, String(item.seq));
      button.addEventListener("click", () => this.showRecord(item.round_id));
      return el("tr", {}, el("td", {}, button), el("td", {}, time(item.ended_at)), el("td", {}, item.kind),
        el("td", {}, item.outcome ?? ""), el("td", {}, item.reason ?? ""), el("td", {}, item.kept ? "yes" : "hot"));
    });
    $("#rounds tbody").replaceChildren(...rows);
  }

  async showRecord(roundId) {
    const view = await api(`/agents/${encodeURIComponent(this.agentId)}/rounds/${encodeURIComponent(roundId)}`);
    const pre = $("#record");
    pre.hidden = false;
    pre.textContent = JSON.stringify(view.record, null, 2);
  }

  showTokens(tokens) {
    $("#tokens tbody").replaceChildren(...tokens.map((token) =>
      el("tr", { class: token.revoked_at ? "revoked" : "" }, el("td", {}, time(token.issued_at)),
        el("td", {}, token.type), el("td", {}, token.audience), el("td", {}, time(token.expires_at)),
        el("td", {}, token.revoked_at ? time(token.revoked_at) : ""))));
  }

  async act(action) {
    const result = $("#action-result");
    result.textContent = `${action}…`;
    try {
      await api(`/agents/${encodeURIComponent(this.agentId)}/${action}`, { method: "POST", body: {} });
      result.textContent = `${action}: done`;
    } catch (error) {
      result.textContent = error instanceof ApiError ? `${action}: ${error.code}: ${error.message}` : String(error);
    }
    await this.refresh();
    this.onChanged();
  }
}
