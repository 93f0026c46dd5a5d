"""The fleet as a whole under ``/v1``: an overview with positions, the zones policies name, events
across agents (a page, or a live stream), and per agent its held identity and tokens issued.

What the dashboard and ``geoattest verifier`` read; all of it is for viewers. Tokens are listed
without the token itself (a bearer credential: ``GET /v1/tokens`` is for admins).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import redis
import shapely.geometry
from flask import Blueprint, Response, current_app, jsonify, request

from geoattest.access.guard import caller, requires
from geoattest.access.keys import Role
from geoattest.errors import AgentIdInvalid, MalformedRequest
from geoattest.openapi import documented
from geoattest.wire import AGENT_ID_RULE, is_agent_id
from geofence import ZoneSet
from verifier.core.position import NodePosition
from verifier.core.states import AgentState
from verifier.engine.status import StatusReader
from verifier.storage.activity import ActivityReads
from verifier.storage.fleet_reads import MAX_EVENTS, FleetReads, IssuedToken
from verifier.storage.sql import VerifierStore
from verifier.web.api import status_view
from verifier.web.event_stream import event_stream
from verifier.web.positions import PositionCache

fleet_blueprint = Blueprint("fleet", __name__, url_prefix="/v1")

READS = "geoattest.fleet_reads"
ACTIVITY = "geoattest.activity"
ACTIVITY_BUCKETS = 30
DEFAULT_ACTIVITY_SECONDS, MIN_ACTIVITY_SECONDS, MAX_ACTIVITY_SECONDS = 600, 60, 3600
POSITIONS = "geoattest.positions"
REDIS = "geoattest.redis"
ZONES = "geoattest.zones"


@fleet_blueprint.before_request
def _check_request() -> None:
    agent_id = (request.view_args or {}).get("agent_id")
    if agent_id is not None and not is_agent_id(agent_id):
        raise AgentIdInvalid(f"{agent_id[:80]!a} is not an agent id: {AGENT_ID_RULE}")


def _reads() -> FleetReads:
    reads: FleetReads = current_app.extensions[READS]
    return reads


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@fleet_blueprint.get("/whoami")
@requires(Role.VIEWER)
@documented("The caller's API key name and role")
def whoami() -> Response:
    """The caller's key name and role (the dashboard offers admin actions to admins only)."""
    who = caller()
    assert who is not None  # noqa: S101  # requires() let only an authenticated caller through
    return jsonify({"name": who.name, "role": who.role.value})


@fleet_blueprint.get("/fleet")
@requires(Role.VIEWER)
@documented("Every agent through the lease, counts per state, last judged positions")
def fleet() -> Response:
    """Every agent through its lease, with its last judged position, and counts per state."""
    reader: StatusReader = current_app.extensions["geoattest.status"]
    positions: PositionCache = current_app.extensions[POSITIONS]
    now = _now()
    statuses = reader.all(now)
    positions.forget_others({s.view.agent_id for s in statuses})
    agents = []
    for status in statuses:
        view = status_view(status)
        found = positions.position(status.view.agent_id, status.view.records)
        view["position"] = _position_json(found) if found is not None else None
        agents.append(view)
    counts = Counter(str(agent["state"]) for agent in agents)
    return jsonify(
        {
            "at": now.isoformat().replace("+00:00", "Z"),
            "counts": {state.value: counts.get(state.value, 0) for state in AgentState},
            "agents": agents,
        }
    )


@fleet_blueprint.get("/fleet/activity")
@requires(Role.VIEWER)
@documented("Rounds by outcome, latency and tokens issued over recent buckets (the charts)")
def activity() -> Response:
    """Rounds by outcome, their latency (p50, p95) and tokens issued over the last ``seconds``
    (60..3600, default 600) in 30 buckets, oldest first: the dashboard's charts."""
    seconds = _int_arg("seconds", DEFAULT_ACTIVITY_SECONDS, MAX_ACTIVITY_SECONDS)
    if seconds < MIN_ACTIVITY_SECONDS:
        raise MalformedRequest(f"seconds must be an integer in {MIN_ACTIVITY_SECONDS}..3600")
    reads: ActivityReads = current_app.extensions[ACTIVITY]
    found = reads.window(_now(), float(seconds), ACTIVITY_BUCKETS)
    buckets = [
        {
            "start": _iso(bucket.start),
            "rounds": bucket.rounds,
            "latency_p50_seconds": bucket.latency(0.5),
            "latency_p95_seconds": bucket.latency(0.95),
            "tokens_issued": bucket.tokens,
        }
        for bucket in found.buckets
    ]
    return jsonify(
        {
            "since": _iso(found.since),
            "bucket_seconds": found.bucket_seconds,
            "truncated": found.truncated,
            "buckets": buckets,
        }
    )


@fleet_blueprint.get("/zones")
@requires(Role.VIEWER)
@documented("The zones the policies name, as GeoJSON")
def zones() -> Response:
    """The zones the stored policies name, as GeoJSON (each feature lists those policies)."""
    zone_set: ZoneSet | None = current_app.extensions.get(ZONES)
    store: VerifierStore = current_app.extensions["geoattest.verifier_store"]
    named: dict[str, list[str]] = {}
    for policy in store.list_policies():
        location = policy.document.location or {}
        listed = location.get("zones")
        for zone_id in listed if isinstance(listed, list) else ():
            named.setdefault(str(zone_id), []).append(policy.name)
    features = []
    for zone in zone_set.zones if zone_set is not None else ():
        if zone.id in named:
            features.append(
                {
                    "type": "Feature",
                    "id": zone.id,
                    "properties": {
                        "name": zone.name,
                        "version": zone.version,
                        "policies": named[zone.id],
                    },
                    "geometry": shapely.geometry.mapping(zone.geometry),
                }
            )
    return jsonify({"type": "FeatureCollection", "features": features})


@fleet_blueprint.get("/events")
@requires(Role.VIEWER)
@documented("Recent state changes (agent, limit)")
def events() -> Response:
    """Events across the fleet (``agent``, ``after_id``, ``limit``), oldest first."""
    found = _reads().events(
        agent_id=_agent_arg(),
        after_id=_int_arg("after_id", 0, 2**62),
        limit=_int_arg("limit", 100, MAX_EVENTS) or 100,
    )
    return jsonify({"events": [event.to_json() for event in found]})


@fleet_blueprint.get("/events/stream")
@requires(Role.VIEWER)
@documented("State changes as server-sent events (resumes with Last-Event-ID)")
def stream() -> Response:
    """Server-sent events (``verifier.web.event_stream``); ``agent`` filters one agent."""
    resume = request.headers.get("Last-Event-ID") or request.args.get("after_id") or "0"
    if not resume.isdigit() or int(resume) >= 2**62:
        raise MalformedRequest("Last-Event-ID (after_id) must be an event id")
    client: redis.Redis = current_app.extensions[REDIS]
    body = event_stream(client, _reads(), agent_id=_agent_arg(), after_id=int(resume))
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must not hold events back
    return response


@fleet_blueprint.get("/agents/<agent_id>/identity")
@requires(Role.VIEWER)
@documented("An agent's identity: EK chain, AK, location key")
def identity(agent_id: str) -> Response:
    held = _reads().identity(agent_id)
    return jsonify(
        {
            "agent_id": held.agent_id,
            "policy": held.policy_name,
            "agent_url": held.agent_url,
            "ak_sha256": held.ak_sha256.hex(),
            "location_key_sha256": _hex(held.location_key_sha256),
            "tls_certificate_sha256": held.tls_certificate_sha256.hex(),
            "ek_certificate_sha256": _hex(held.ek_certificate_sha256),
        }
    )


@fleet_blueprint.get("/agents/<agent_id>/tokens")
@requires(Role.VIEWER)
@documented("Tokens issued to an agent (metadata, never the token)")
def tokens(agent_id: str) -> Response:
    """The newest tokens issued to the agent (at most ``limit``, 50 by default), newest first."""
    _reads().identity(agent_id)  # 404 for an agent not under verification
    found = _reads().tokens(agent_id, _int_arg("limit", 50, MAX_EVENTS) or 50)
    return jsonify({"tokens": [_token_json(token) for token in found]})


def _agent_arg() -> str | None:
    agent_id = request.args.get("agent")
    if agent_id is not None and not is_agent_id(agent_id):
        raise MalformedRequest(f"agent must be an agent id: {AGENT_ID_RULE}")
    return agent_id


def _int_arg(name: str, default: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise MalformedRequest(f"{name} must be an integer in 0..{high}")
    return int(raw)


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _position_json(position: NodePosition) -> dict[str, object]:
    return {
        "latitude": position.latitude,
        "longitude": position.longitude,
        "accuracy_m": position.accuracy_m,
        "decision": position.decision,
        "zone": position.zone_id,
        "distance_m": round(position.distance_m, 2) if position.distance_m is not None else None,
        "verdict": position.verdict,
        "reason": position.reason,
        "fix_at": _iso(position.fix_at),
        "round_id": position.round_id,
        "seq": position.seq,
    }


def _token_json(token: IssuedToken) -> dict[str, object]:
    return {
        "jti": token.jti,
        "type": token.type,
        "audience": token.audience,
        "workload_sha256": token.workload_sha256.hex(),
        "issued_at": _iso(token.issued_at),
        "expires_at": _iso(token.expires_at),
        "record_seq": token.record_seq,
        "revoked_at": _iso(token.revoked_at) if token.revoked_at else None,
    }
