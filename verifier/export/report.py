"""What people would rather look at: a verified bundle as an HTML page (printed to PDF by the
shell) and its per-round table as CSV.

The page holds the window, each node's identity (EK vendor and chain), a timeline of its
states, a map of its fixes over the zone polygons drawn from the bundle's own GeoJSON (inline
SVG, no tile server, nothing fetched), a table of failures with their reasons, the per-day
table, and the verification summary with what could not be checked. Pure: strings out.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence

from geofence import ZoneSet
from verifier.export.results import AgentVerification, BundleVerification, Fix, Link, LinkKind

MAP_WIDTH, MAP_HEIGHT = 640.0, 420.0
TIMELINE_WIDTH, TIMELINE_HEIGHT = 680.0, 54.0
_STATE_COLOURS = {
    "attested": "#2e7d32",
    "attesting": "#9e9d24",
    "failed": "#c62828",
    "unreachable": "#ef6c00",
    "stale": "#8d6e63",
    "paused": "#607d8b",
    "registered": "#90a4ae",
}
_DECISION_COLOURS = {"inside": "#1565c0", "outside": "#c62828", "uncertain": "#ef6c00"}

CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: "DejaVu Sans", sans-serif; font-size: 9.5pt; color: #1b1b1b; }
h1 { font-size: 16pt; margin: 0 0 4pt; } h2 { font-size: 12.5pt; margin: 14pt 0 4pt;
  border-bottom: 1px solid #999; } h3 { font-size: 10.5pt; margin: 10pt 0 3pt; }
table { border-collapse: collapse; margin: 4pt 0; } td, th { border: 1px solid #bbb;
  padding: 2pt 5pt; text-align: right; } th { background: #eee; } td.l, th.l { text-align: left; }
.ok { color: #2e7d32; font-weight: bold; } .bad { color: #c62828; font-weight: bold; }
.muted { color: #666; } .small { font-size: 8pt; } svg { display: block; margin: 4pt 0; }
table.wide { width: 100%; table-layout: fixed; } td.l { overflow-wrap: anywhere; }
h2, h3 { page-break-after: avoid; } table, tr, svg { page-break-inside: avoid; }
"""


def render_html(result: BundleVerification, zones: Mapping[str, ZoneSet]) -> str:
    """The report page. ``zones``: the bundle's zone sets by file digest (hex)."""
    manifest = result.manifest
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Residency proof {_e(_t(manifest.window_from))}</title><style>{CSS}</style>",
        "</head><body>",
        "<h1>Residency proof</h1>",
        f"<p>Window <b>{_e(_t(manifest.window_from))}</b> to <b>{_e(_t(manifest.window_to))}</b>"
        f" · exported {_e(_t(manifest.created_at))} by verifier {_e(manifest.verifier_id)}</p>",
        _verdict(result),
    ]
    for agent in result.agents:
        parts.append(_agent(agent, zones))
    parts.append(_summary(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def render_csv(result: BundleVerification) -> str:
    """One row per full record and per fold of every agent, in chain order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["agent_id", "kind", "first_seq", "last_seq", "started_at", "ended_at", "rounds",
         "outcome", "outcomes", "reason", "from_state", "to_state", "latitude", "longitude",
         "accuracy_m", "zone_decision", "zone", "logged", "reverified"]
    )  # fmt: skip
    for agent in result.agents:
        for link in agent.links:
            fix = link.fix
            writer.writerow(
                [
                    link.agent_id,
                    link.kind.value,
                    link.first_seq,
                    link.last_seq,
                    _t(link.started_at),
                    _t(link.ended_at),
                    link.rounds,
                    link.outcome or "",
                    json.dumps(dict(link.outcomes), sort_keys=True) if link.outcomes else "",
                    link.reason or "",
                    link.from_state or "",
                    link.to_state or "",
                    f"{fix.latitude:.6f}" if fix else "",
                    f"{fix.longitude:.6f}" if fix else "",
                    f"{fix.accuracy_m:.1f}" if fix else "",
                    fix.decision if fix else "",
                    fix.zone_id if fix else "",
                    "yes" if link.logged else "no",
                    "yes" if link.reverified else "no",
                ]
            )
    return out.getvalue()


# --- sections --------------------------------------------------------------------------------


def _verdict(result: BundleVerification) -> str:
    if result.clean:
        text = "Verified. Every node was attested, and inside its zones, for the whole window."
        return f"<p class='ok'>{text}</p>"
    text = "Verified. The window holds failures, gaps or zone decisions other than inside."
    return f"<p class='bad'>{text}</p>"


def _agent(agent: AgentVerification, zones: Mapping[str, ZoneSet]) -> str:
    parts = [
        f"<h2>Node {_e(agent.agent_id)} <span class='muted'>(policy {_e(agent.policy)})</span></h2>"
    ]
    identity = agent.identity
    if identity is not None:
        vendor = " ".join(v for v in (identity.tpm_manufacturer, identity.tpm_model) if v) or "—"
        rows = [
            ("TPM (from the EK certificate)", vendor),
            ("EK certificate SHA-256", identity.ek_fingerprint),
            ("EK chain to the auditor's CA", " → ".join(identity.chain) or "—"),
            ("Attestation key (TPM name)", ", ".join(identity.ak_names) or "—"),
            ("Location key (certified by the AK)", identity.location_key or "none"),
        ]
        parts.append(_table(["", ""], [[k, v] for k, v in rows], left=(0, 1), header=False))
    parts.append(f"<p><b>{_e(_headline(agent))}</b></p>")
    parts.append("<h3>Timeline of states</h3>")
    parts.append(_timeline(agent))
    fixes = [(link, link.fix) for link in agent.links if link.fix is not None]
    if fixes or agent.location_required:
        parts.append("<h3>Where it was</h3>")
        parts.append(_map(fixes, zones))
    parts.append("<h3>Per day</h3>")
    parts.append(_days(agent))
    parts.append("<h3>Failures</h3>")
    parts.append(_failures(agent.failures))
    if agent.gaps or agent.unplaced_gap_seconds:
        parts.append("<h3>Not attested</h3>")
        gaps: list[list[object]] = [
            [_t(g.start), _t(g.end), f"{g.seconds:.0f}"] for g in agent.gaps
        ]
        if agent.unplaced_gap_seconds:
            gaps.append(
                ["inside folded rounds", "(not placed)", f"{agent.unplaced_gap_seconds:.0f}"]
            )
        parts.append(_table(["from", "to", "seconds"], gaps, left=(0, 1)))
    return "\n".join(parts)


def _headline(agent: AgentVerification) -> str:
    attested = sum(s.seconds for s in agent.attested)
    window = attested + sum(g.seconds for g in agent.gaps)
    share = 100 * attested / window if window else 0.0
    rounds = sum(d.rounds for d in agent.days)
    decisions = agent.decisions
    return (
        f"Attested {share:.2f}% of the window; {rounds} rounds, {len(agent.failures)} "
        f"integrity failure(s), {len(agent.gaps)} stretch(es) not attested; zone decisions: "
        f"{decisions['inside']} inside, {decisions['outside']} outside, "
        f"{decisions['uncertain']} uncertain; {agent.records_verified} records re-verified."
    )


def _days(agent: AgentVerification) -> str:
    rows = [
        [str(d.day), d.rounds, d.passed, d.failed, d.unreachable, d.other,
         f"{d.gap_seconds:.0f}", d.inside, d.outside, d.uncertain]
        for d in agent.days
    ]  # fmt: skip
    head = ["day", "rounds", "passed", "failed", "unreachable", "other", "gap (s)", "inside",
            "outside", "uncertain"]  # fmt: skip
    return _table(head, rows, left=(0,))


def _failures(failures: Sequence[Link]) -> str:
    if not failures:
        return "<p class='ok'>None.</p>"
    rows = [[f"#{f.first_seq}", _t(f.ended_at), f.reason or "", f.message[:300]] for f in failures]
    table = _table(["record", "at", "reason", "what failed"], rows, left=(0, 1, 2, 3))
    widths = "".join(f"<col style='width:{w}%'>" for w in (8, 20, 22, 50))
    return table.replace("<table>", f"<table class='wide'><colgroup>{widths}</colgroup>", 1)


def _summary(result: BundleVerification) -> str:
    checkpoint = result.checkpoint
    lines = [
        "<h2>Verification</h2><ul>",
        f"<li>Manifest signed by the verifier's log key; {result.files} files, each with the "
        "SHA-256 the manifest lists.</li>",
        f"<li>Transparency log <code>{_e(checkpoint.origin)}</code>: checkpoint of "
        f"{checkpoint.size} entries signed {_e(_t(checkpoint.time))}; every record and fold "
        "of the window proven in it (RFC 9162), or vouched for through the hash chain.</li>",
    ]
    if result.logged_by is not None:
        lines.append(
            f"<li>Everything proven was in the log by {_e(_t(result.logged_by.time))}.</li>"
        )
    lines.append(
        f"<li>{result.records_verified} full records re-verified: quote signature with the AK, "
        "nonce binding, PCR digest, IMA replay against the stored policy, location signature, "
        "zone decision against the stored zones.</li></ul>"
    )
    lines.append("<h3>Not checked</h3><ul class='small'>")
    lines += [f"<li>{_e(item)}</li>" for item in result.not_checked]
    lines.append("</ul>")
    return "\n".join(lines)


# --- drawings --------------------------------------------------------------------------------


def _timeline(agent: AgentVerification) -> str:
    if not agent.links:
        return "<p class='muted'>No records in the window.</p>"
    start = min([*(g.start for g in agent.gaps), *(a.start for a in agent.attested)],
                default=agent.links[0].ended_at)  # fmt: skip
    end = max([*(g.end for g in agent.gaps), *(a.end for a in agent.attested)],
              default=agent.links[-1].ended_at)  # fmt: skip
    span = max((end - start).total_seconds(), 1.0)

    def x(moment: dt.datetime) -> float:
        return (moment - start).total_seconds() / span * TIMELINE_WIDTH

    shapes = [f"<rect x='0' y='8' width='{TIMELINE_WIDTH}' height='18' fill='#e0e0e0'/>"]
    for stretch in agent.attested:
        shapes.append(_rect(x(stretch.start), x(stretch.end), _STATE_COLOURS["attested"]))
    for gap in agent.gaps:
        state = _state_at(agent.links, gap.start)
        shapes.append(_rect(x(gap.start), x(gap.end), _STATE_COLOURS.get(state, "#bdbdbd")))
    for link in agent.links:
        if link.outcome in ("integrity_failure", "rebooted", "unreachable"):
            mark = {"integrity_failure": "#c62828", "rebooted": "#6a1b9a"}.get(
                str(link.outcome), "#ef6c00"
            )
            px = x(link.ended_at)
            shapes.append(f"<line x1='{px:.1f}' y1='4' x2='{px:.1f}' y2='30' stroke='{mark}' "
                          "stroke-width='1.5'/>")  # fmt: skip
    shapes.append(f"<text x='0' y='44' font-size='8'>{_e(_t(start))}</text>")
    shapes.append(
        f"<text x='{TIMELINE_WIDTH}' y='44' font-size='8' text-anchor='end'>{_e(_t(end))}</text>"
    )
    legend = " ".join(
        f"<span style='color:{colour}'>■</span> {name}"
        for name, colour in _STATE_COLOURS.items()
        if name in {"attested", "attesting", "failed", "unreachable"}
    )
    return (
        f"<svg width='{TIMELINE_WIDTH}' height='{TIMELINE_HEIGHT}' "
        f"xmlns='http://www.w3.org/2000/svg'>{''.join(shapes)}</svg>"
        f"<p class='small'>{legend} · marks: <span style='color:#c62828'>|</span> failure "
        "<span style='color:#6a1b9a'>|</span> reboot <span style='color:#ef6c00'>|</span> "
        "unreachable</p>"
    )


def _map(fixes: Sequence[tuple[Link, Fix]], zones: Mapping[str, ZoneSet]) -> str:
    verified = [fix for _, fix in fixes if fix.decision != "unverified"]
    wanted = {z.strip() for fix in verified for z in fix.zone_id.split(",")}
    polygons = [
        (zone.id, zone.geometry) for zone_set in zones.values() for zone in zone_set.zones
        if zone.id in wanted
    ]  # fmt: skip
    points = [(f.longitude, f.latitude) for f in verified]
    bounds = _bounds(points, [geometry.bounds for _, geometry in polygons])
    if bounds is None:
        return "<p class='muted'>No verified fix in the window.</p>"
    west, south, east, north = bounds
    mid = math.cos(math.radians((south + north) / 2))
    scale = min(MAP_WIDTH / max((east - west) * mid, 1e-9), MAP_HEIGHT / max(north - south, 1e-9))

    def project(lon: float, lat: float) -> tuple[float, float]:
        return (lon - west) * mid * scale, (north - lat) * scale

    shapes = []
    for zone_id, geometry in polygons:
        for ring in _rings(geometry):
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in (project(*c) for c in ring))
            shapes.append(f"<polygon points='{path}' fill='#e3f2fd' stroke='#1565c0' "
                          "stroke-width='1'/>")  # fmt: skip
        cx, cy = project(geometry.centroid.x, geometry.centroid.y)
        shapes.append(f"<text x='{cx:.1f}' y='{cy:.1f}' font-size='11' fill='#0d47a1'>"
                      f"{_e(zone_id)}</text>")  # fmt: skip
    for fix in verified:
        px, py = project(fix.longitude, fix.latitude)
        colour = _DECISION_COLOURS.get(fix.decision, "#616161")
        shapes.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3' fill='{colour}' "
                      "fill-opacity='0.7'/>")  # fmt: skip
    width = (east - west) * mid * scale
    height = (north - south) * scale
    caption = (
        f"{len(verified)} verified fixes of full records (folded rounds keep no fix); zone "
        "polygons from the bundle's GeoJSON. <span style='color:#1565c0'>●</span> inside "
        "<span style='color:#c62828'>●</span> outside <span style='color:#ef6c00'>●</span> "
        "uncertain"
    )
    return (
        f"<svg width='{width:.0f}' height='{height:.0f}' xmlns='http://www.w3.org/2000/svg'>"
        f"<rect width='100%' height='100%' fill='#fafafa' stroke='#999'/>{''.join(shapes)}</svg>"
        f"<p class='small'>{caption}</p>"
    )


def _bounds(
    points: Sequence[tuple[float, float]], boxes: Iterable[tuple[float, float, float, float]]
) -> tuple[float, float, float, float] | None:
    lons = [p[0] for p in points] + [v for b in boxes for v in (b[0], b[2])]
    lats = [p[1] for p in points]
    lats += [v for b in boxes for v in (b[1], b[3])]
    if not lons or not lats:
        return None
    margin = max(max(lons) - min(lons), max(lats) - min(lats), 0.01) * 0.08
    return min(lons) - margin, min(lats) - margin, max(lons) + margin, max(lats) + margin


def _rings(geometry: object) -> list[list[tuple[float, float]]]:
    polygons = getattr(geometry, "geoms", [geometry])
    return [list(p.exterior.coords) for p in polygons if hasattr(p, "exterior")]


def _state_at(links: Sequence[Link], moment: dt.datetime) -> str:
    state = "registered"
    for link in links:
        when = link.started_at if link.kind is LinkKind.FOLD else link.ended_at
        if when > moment:
            break
        state = link.to_state or state
    return state


def _rect(left: float, right: float, colour: str) -> str:
    return (f"<rect x='{left:.2f}' y='8' width='{max(right - left, 0.6):.2f}' height='18' "
            f"fill='{colour}'/>")  # fmt: skip


def _table(
    head: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    left: Sequence[int] = (),
    header: bool = True,
) -> str:
    def cell(tag: str, index: int, value: object) -> str:
        cls = " class='l'" if index in left else ""
        return f"<{tag}{cls}>{_e(str(value))}</{tag}>"

    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _t(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _e(text: str) -> str:
    return html.escape(text, quote=True)
