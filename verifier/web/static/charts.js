// The fleet's charts, drawn as SVG with no library: rounds per second by outcome, round latency,
// lease margins, failures over time and tokens issued. Rounds, latency and tokens come from
// /v1/fleet/activity (the evidence records and the token ledger); lease margins from /v1/fleet.
import { api } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 300;
const H = 90;
const OUTCOMES = ["passed", "rebooted", "integrity_failure", "unreachable", "verifier_fault"];

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function frame(figure, summary) {
  const old = figure.querySelector("svg");
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary });
  chart.append(svg("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, class: "axis" }));
  if (old) old.replaceWith(chart);
  else figure.prepend(chart);
  figure.querySelector(".latest").textContent = summary;
  return chart;
}

// Stacked bars: series[i] = {class, values[]} of equal length.
function bars(figure, series, summary) {
  const chart = frame(figure, summary);
  const count = series[0]?.values.length ?? 0;
  const totals = Array.from({ length: count }, (_, i) => series.reduce((sum, s) => sum + s.values[i], 0));
  const top = Math.max(1e-9, ...totals);
  const width = W / Math.max(1, count);
  for (let i = 0; i < count; i += 1) {
    let y = H;
    for (const s of series) {
      const h = (s.values[i] / top) * (H - 4);
      if (h <= 0) continue;
      y -= h;
      chart.append(svg("rect", { x: i * width + 0.5, y, width: Math.max(1, width - 1), height: h, class: s.class }));
    }
  }
}

// Lines: series = [{class, values[] (null: no point)}].
function lines(figure, series, summary) {
  const chart = frame(figure, summary);
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const top = Math.max(1e-9, ...all);
  for (const s of series) {
    const step = W / Math.max(1, s.values.length - 1);
    const points = s.values
      .map((v, i) => (v === null ? null : `${(i * step).toFixed(1)},${(H - 2 - (v / top) * (H - 6)).toFixed(1)}`))
      .filter((p) => p !== null);
    if (points.length) chart.append(svg("polyline", { points: points.join(" "), class: s.class }));
    for (const point of points.length === 1 ? points : []) { // one bucket: a dot, not an empty line
      const [x, y] = point.split(",");
      chart.append(svg("circle", { cx: x, cy: y, r: 2, class: `${s.class} dot` }));
    }
  }
}

function rate(buckets, seconds, pick) {
  return buckets.map((b) => pick(b) / seconds);
}

export class FleetCharts {
  constructor(root) {
    this.root = root;
  }

  figure(name) {
    return this.root.querySelector(`[data-chart="${name}"]`);
  }

  async refresh() {
    const activity = await api("/fleet/activity?seconds=600");
    const { buckets, bucket_seconds: seconds } = activity;
    const last = buckets[buckets.length - 1] ?? { rounds: {}, tokens_issued: 0 };
    const perSecond = (b) => Object.values(b.rounds).reduce((a, n) => a + n, 0) / seconds;
    bars(this.figure("rounds"),
      OUTCOMES.map((o) => ({ class: `o-${o}`, values: rate(buckets, seconds, (b) => b.rounds[o] ?? 0) })),
      `${perSecond(last).toFixed(1)} rounds/s now`);
    const p95 = last.latency_p95_seconds;
    lines(this.figure("latency"), [
      { class: "p50", values: buckets.map((b) => b.latency_p50_seconds) },
      { class: "p95", values: buckets.map((b) => b.latency_p95_seconds) },
    ], p95 === null || p95 === undefined ? "no rounds" : `p95 ${(p95 * 1000).toFixed(0)} ms`);
    const failures = buckets.map((b) => b.rounds.integrity_failure ?? 0);
    bars(this.figure("failures"), [{ class: "o-integrity_failure", values: failures }],
      `${failures.reduce((a, n) => a + n, 0)} failed rounds in 10 min`);
    const tokens = buckets.map((b) => b.tokens_issued);
    bars(this.figure("tokens"), [{ class: "tokens", values: tokens }],
      `${tokens.reduce((a, n) => a + n, 0)} tokens in 10 min`);
  }

  // Lease margins of attested agents (from the fleet listing), lowest first.
  showLeases(agents) {
    const attested = agents
      .filter((a) => a.state === "attested" && a.lease_max_age_seconds > 0)
      .map((a) => ({ id: a.agent_id, left: a.lease_remaining_seconds, of: a.lease_max_age_seconds }))
      .sort((a, b) => a.left - b.left)
      .slice(0, 20);
    const lowest = attested[0];
    const chart = frame(this.figure("leases"),
      lowest ? `lowest: ${lowest.id} ${lowest.left.toFixed(1)} s` : "no attested agent");
    const height = H / Math.max(1, attested.length);
    attested.forEach((a, i) => {
      const width = Math.max(1, (a.left / a.of) * W);
      const bar = svg("rect", { x: 0, y: i * height + 0.5, width, height: Math.max(1, height - 1),
        class: a.left / a.of < 0.3 ? "lease low" : "lease" });
      const title = svg("title");
      title.textContent = `${a.id}: ${a.left.toFixed(1)} of ${a.of} s`;
      bar.append(title);
      chart.append(bar);
    });
  }
}
