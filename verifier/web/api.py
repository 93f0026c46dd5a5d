"""The verifier's REST API under ``/v1``: policies, agents under verification, their rounds.

Views parse, call the operations or readers, and serialize. Agent states are always shown
through the lease (``verifier.engine.status``): the list and a single agent are the same view.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from flask import Blueprint, Response, current_app, jsonify, request

from geoattest.access.guard import requires
from geoattest.access.keys import Role
from geoattest.errors import MalformedRequest, NotFound
from geoattest.http import parse_body, validate_json
from geoattest.http_upload import read_json_upload
from geoattest.wire import (
    AGENT_ID_PATTERN,
    AddAgentRequest,
    AgentStatusView,
    EventView,
    FoldView,
    PolicyDocument,
    PolicyName,
    PolicySummaryView,
    PolicyView,
    RoundPage,
    RoundRecordView,
    RoundSummaryView,
)
from verifier.core.reasons import Reason
from verifier.engine.status import AgentStatus, StatusReader
from verifier.operations import Operations
from verifier.storage.records import FoldSummary, RecordStore, RecordSummary
from verifier.storage.sql import PolicySummary, StoredPolicy, VerifierStore

blueprint = Blueprint("verifier", __name__, url_prefix="/v1")

MAX_PAGE = 1000
POLICY_LIMIT_CONFIG = "GEOATTEST_POLICY_UPLOAD_MAX_BYTES"  # settings.policy_upload_max_bytes
_AGENT_ID = re.compile(AGENT_ID_PATTERN)


def _ops() -> Operations:
    ops: Operations = current_app.extensions["geoattest.operations"]
    return ops


def _store() -> VerifierStore:
    store: VerifierStore = current_app.extensions["geoattest.verifier_store"]
    return store


def _status() -> StatusReader:
    reader: StatusReader = current_app.extensions["geoattest.status"]
    return reader


def _records() -> RecordStore:
    records: RecordStore = current_app.extensions["geoattest.records"]
    return records


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@blueprint.before_request
def _check_request() -> None:
    agent_id = (request.view_args or {}).get("agent_id")
    if agent_id is not None and not _AGENT_ID.match(agent_id):
        raise MalformedRequest("agent id must be 1-64 characters of [A-Za-z0-9._-]")


@blueprint.put("/policies/<name>")
@requires(Role.ADMIN)
def put_policy(name: str) -> Response:
    """A policy document up to ``policy_upload_max_bytes`` (not the API's 256 KiB), plain or
    ``Content-Encoding: gzip``, read in chunks (``geoattest.http_upload``)."""
    _check_name(name)
    document = validate_json(
        PolicyDocument, read_json_upload(current_app.config[POLICY_LIMIT_CONFIG])
    )
    return jsonify(_summary_view(_ops().put_policy(name, document)))


@blueprint.get("/policies")
@requires(Role.VIEWER)
def list_policies() -> Response:
    """Names, versions, digests and sizes; the documents are at ``/policies/<name>``."""
    return jsonify({"policies": [_summary_view(p) for p in _store().policy_summaries()]})


@blueprint.get("/policies/<name>")
@requires(Role.VIEWER)
def get_policy(name: str) -> Response:
    return jsonify(_policy_view(_store().get_policy(name)))


@blueprint.delete("/policies/<name>")
@requires(Role.ADMIN)
def delete_policy(name: str) -> tuple[str, int]:
    _ops().delete_policy(name)
    return "", 204


@blueprint.post("/agents/<agent_id>")
@requires(Role.ADMIN)
def add_agent(agent_id: str) -> tuple[Response, int]:
    body = parse_body(AddAgentRequest)
    _ops().add_agent(agent_id, body.policy)
    return jsonify(status_view(_status().one(agent_id, _now()))), 201


@blueprint.get("/agents")
@requires(Role.VIEWER)
def list_agents() -> Response:
    return jsonify({"agents": [status_view(status) for status in _status().all(_now())]})


@blueprint.get("/agents/<agent_id>")
@requires(Role.VIEWER)
def show_agent(agent_id: str) -> Response:
    return jsonify(status_view(_status().one(agent_id, _now())))


@blueprint.put("/agents/<agent_id>/policy")
@requires(Role.ADMIN)
def set_agent_policy(agent_id: str) -> Response:
    body = parse_body(AddAgentRequest)
    _ops().set_policy(agent_id, body.policy)
    return jsonify(status_view(_status().one(agent_id, _now())))


_ACTIONS = ("pause", "resume", "readmit", "refresh")


@blueprint.post("/agents/<agent_id>/<action>")
@requires(Role.ADMIN)
def act_on_agent(agent_id: str, action: str) -> Response:
    if action not in _ACTIONS:
        raise NotFound(f"no action {action!r} (one of {', '.join(_ACTIONS)})")
    getattr(_ops(), action)(agent_id)
    return jsonify(status_view(_status().one(agent_id, _now())))


@blueprint.delete("/agents/<agent_id>")
@requires(Role.ADMIN)
def remove_agent(agent_id: str) -> tuple[str, int]:
    _ops().remove(agent_id)
    return "", 204


@blueprint.get("/agents/<agent_id>/events")
@requires(Role.VIEWER)
def agent_events(agent_id: str) -> Response:
    events = [
        EventView.model_validate(e.to_json()).model_dump(mode="json")
        for e in _store().events(agent_id)
    ]
    return jsonify({"events": events})


@blueprint.get("/agents/<agent_id>/rounds")
@requires(Role.VIEWER)
def agent_rounds(agent_id: str) -> Response:
    """Evidence records (and folds) in chain order: ``?from=&to=`` (ISO 8601), ``after_seq``,
    ``limit`` (at most 1000)."""
    _store().get_agent(agent_id)
    limit = _int_arg("limit", 100, 1, MAX_PAGE)
    items = _records().page(
        agent_id,
        since=_time_arg("from"),
        until=_time_arg("to"),
        after_seq=_int_arg("after_seq", 0, 0, 2**62),
        limit=limit,
    )
    views = [_round_view(item) for item in items]
    last = items[-1] if items else None
    next_after = None
    if last is not None and len(items) == limit:
        next_after = last.seq if isinstance(last, RecordSummary) else last.last_seq
    return jsonify(RoundPage(items=views, next_after_seq=next_after).model_dump(mode="json"))


@blueprint.get("/agents/<agent_id>/rounds/<round_id>")
@requires(Role.VIEWER)
def agent_round(agent_id: str, round_id: str) -> Response:
    stored = _records().get(agent_id, round_id)
    view = RoundRecordView(
        agent_id=agent_id,
        seq=stored.record.seq,
        round_id=stored.record.round_id,
        digest=stored.digest.hex(),
        kept=stored.kept,
        canonical=stored.canonical,
        record=json.loads(stored.canonical),
    )
    return jsonify(view.model_dump(mode="json"))


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise MalformedRequest(f"{name} must be an integer in {low}..{high}")
    return int(raw)


def _time_arg(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as e:
        raise MalformedRequest(f"{name} must be an ISO 8601 time, e.g. 2026-12-01T10:00:00Z") from e
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _check_name(name: str) -> None:
    PolicyView.model_validate(
        {"name": name, "version": 0, "updated_at": "2026-01-01T00:00:00Z", "document": {}}
    )


def _policy_view(policy: StoredPolicy) -> dict[str, object]:
    view = PolicyView(
        name=policy.name,
        version=policy.version,
        updated_at=policy.updated_at,
        document=policy.document,
    )
    body = view.model_dump(mode="json")
    body["sha256"] = policy.digest.hex()
    body["size_bytes"] = len(policy.canonical)
    return body


def _summary_view(policy: PolicySummary) -> dict[str, object]:
    return PolicySummaryView(
        name=policy.name,
        version=policy.version,
        updated_at=policy.updated_at,
        sha256=policy.digest.hex(),
        size_bytes=policy.size_bytes,
    ).model_dump(mode="json")


def status_view(status: AgentStatus) -> dict[str, object]:
    view, lease = status.view, status.lease
    now = _now()
    reason = view.reason.value if view.reason is not None else None
    message = view.message
    if lease.state is not view.state:  # the lease ran out; the watchdog will name the cause
        reason = Reason.LEASE_EXPIRED.value
        message = f"no round passed in the last {status.max_age.total_seconds():.0f} s"
    return AgentStatusView(
        agent_id=view.agent_id,
        policy=view.policy_name,
        state=lease.state.value,
        stored_state=view.state.value,
        reason=reason,
        message=message,
        details=dict(view.details),
        state_since=view.state_since,
        last_round_at=view.last_round_at,
        last_passed_at=view.last_passed_at,
        lease_expires_at=lease.expires_at,
        lease_remaining_seconds=round(lease.remaining(now), 3),
        lease_max_age_seconds=status.max_age.total_seconds(),
        ima_entries_verified=view.ima_entries_verified,
        records=view.records,
    ).model_dump(mode="json")


def _round_view(item: RecordSummary | FoldSummary) -> RoundSummaryView | FoldView:
    if isinstance(item, FoldSummary):
        return FoldView(
            first_seq=item.first_seq,
            last_seq=item.last_seq,
            count=item.count,
            first_at=item.first_at,
            last_at=item.last_at,
            prev=item.prev.hex(),
            head=item.head.hex(),
            outcomes=item.outcomes,
        )
    return RoundSummaryView(
        kind=item.kind,
        seq=item.seq,
        round_id=item.round_id,
        started_at=item.started_at,
        ended_at=item.ended_at,
        outcome=item.outcome,
        reason=item.reason,
        kept=item.kept,
        digest=item.digest.hex(),
        prev=item.prev.hex(),
        size=item.size,
    )


__all__ = ["PolicyName", "blueprint"]
