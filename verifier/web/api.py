"""The verifier's REST API under ``/v1``: policies, agents under verification, their rounds.

Views parse, call the operations or readers, and serialize. Agent states are always shown
through the lease (``verifier.engine.status``): the list and a single agent are the same view.
"""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, Response, current_app, jsonify, request

from geoattest.access.guard import requires
from geoattest.access.keys import Role
from geoattest.errors import AgentIdInvalid, MalformedRequest, NotFound
from geoattest.http import parse_body, validate_json
from geoattest.http_upload import read_json_upload
from geoattest.openapi import documented
from geoattest.query_args import IntArg, TimeArg
from geoattest.wire import (
    AGENT_ID_RULE,
    POLICY_NAME_RULE,
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
    is_agent_id,
    is_policy_name,
)
from verifier.core.reasons import Reason
from verifier.core.states import AgentMode
from verifier.engine.status import AgentStatus, StatusReader
from verifier.operations import Operations
from verifier.storage.policies import PolicySummary, StoredPolicy
from verifier.storage.records import FoldSummary, RecordStore, RecordSummary
from verifier.storage.sql import VerifierStore

blueprint = Blueprint("verifier", __name__, url_prefix="/v1")
POLICY_LIMIT_CONFIG = "GEOATTEST_POLICY_UPLOAD_MAX_BYTES"  # settings.policy_upload_max_bytes

MAX_PAGE = 1000
LIMIT = IntArg(name="limit", default=100, low=1, high=MAX_PAGE)
AFTER_SEQ = IntArg(name="after_seq", default=0, low=0, high=2**53 - 1)
FROM = TimeArg(name="from", description="records that ended at or after this time")
TO = TimeArg(name="to", description="records that started before this time")


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
    """Refuse path values the records could not hold, before any view runs."""
    values = request.view_args or {}
    agent_id = values.get("agent_id")
    if agent_id is not None and not is_agent_id(agent_id):
        raise AgentIdInvalid(f"{agent_id[:80]!a} is not an agent id: {AGENT_ID_RULE}")
    name = values.get("name")
    if name is not None and not is_policy_name(name):
        raise MalformedRequest(f"{name[:80]!a} is not a policy name: {POLICY_NAME_RULE}")


@blueprint.put("/policies/<name>")
@requires(Role.ADMIN)
@documented("Create or replace a policy", body=PolicyDocument, answer=PolicyView)
def put_policy(name: str) -> Response:
    """A policy document up to ``policy_upload_max_bytes`` (not the API's 256 KiB), plain or
    ``Content-Encoding: gzip``, read in chunks (``geoattest.http_upload``)."""
    document = validate_json(
        PolicyDocument, read_json_upload(current_app.config[POLICY_LIMIT_CONFIG])
    )
    return jsonify(_summary_view(_ops().put_policy(name, document)))


@blueprint.get("/policies")
@requires(Role.VIEWER)
@documented("Every policy")
def list_policies() -> Response:
    """Names, versions, digests and sizes; the documents are at ``/policies/<name>``."""
    return jsonify({"policies": [_summary_view(p) for p in _store().policy_summaries()]})


@blueprint.get("/policies/<name>")
@requires(Role.VIEWER)
@documented("One policy", answer=PolicyView)
def get_policy(name: str) -> Response:
    return jsonify(_policy_view(_store().get_policy(name)))


@blueprint.delete("/policies/<name>")
@requires(Role.ADMIN)
@documented("Delete a policy no agent uses", status=204)
def delete_policy(name: str) -> tuple[str, int]:
    _ops().delete_policy(name)
    return "", 204


@blueprint.post("/agents/<agent_id>")
@requires(Role.ADMIN)
@documented(
    "Start verifying an enrolled agent", body=AddAgentRequest, answer=AgentStatusView, status=201
)
def add_agent(agent_id: str) -> tuple[Response, int]:
    body = parse_body(AddAgentRequest)
    _ops().add_agent(agent_id, body.policy, AgentMode(body.mode))
    return jsonify(status_view(_status().one(agent_id, _now()))), 201


@blueprint.get("/agents")
@requires(Role.VIEWER)
@documented("Every agent under verification, through the lease")
def list_agents() -> Response:
    return jsonify({"agents": [status_view(status) for status in _status().all(_now())]})


@blueprint.get("/agents/<agent_id>")
@requires(Role.VIEWER)
@documented("One agent, through the lease", answer=AgentStatusView)
def show_agent(agent_id: str) -> Response:
    return jsonify(status_view(_status().one(agent_id, _now())))


@blueprint.put("/agents/<agent_id>/policy")
@requires(Role.ADMIN)
@documented("Move an agent to another policy", body=AddAgentRequest, answer=AgentStatusView)
def set_agent_policy(agent_id: str) -> Response:
    body = parse_body(AddAgentRequest)
    _ops().set_policy(agent_id, body.policy)
    return jsonify(status_view(_status().one(agent_id, _now())))


_ACTIONS = ("pause", "resume", "readmit", "refresh")


@blueprint.post("/agents/<agent_id>/<action>")
@requires(Role.ADMIN)
@documented(
    "Pause, resume, re-admit or refresh an agent",
    answer=AgentStatusView,
    path={"action": {"type": "string", "enum": list(_ACTIONS)}},
)
def act_on_agent(agent_id: str, action: str) -> Response:
    if action not in _ACTIONS:
        raise NotFound(f"no action {action!r} (one of {', '.join(_ACTIONS)})")
    getattr(_ops(), action)(agent_id)
    return jsonify(status_view(_status().one(agent_id, _now())))


@blueprint.delete("/agents/<agent_id>")
@requires(Role.ADMIN)
@documented("Stop verifying an agent", status=204)
def remove_agent(agent_id: str) -> tuple[str, int]:
    _ops().remove(agent_id)
    return "", 204


@blueprint.get("/agents/<agent_id>/events")
@requires(Role.VIEWER)
@documented("An agent's state transitions")
def agent_events(agent_id: str) -> Response:
    events = [
        EventView.model_validate(e.to_json()).model_dump(mode="json")
        for e in _store().events(agent_id)
    ]
    return jsonify({"events": events})


@blueprint.get("/agents/<agent_id>/rounds")
@requires(Role.VIEWER)
@documented(
    "An agent's evidence records in chain order",
    answer=RoundPage,
    query=(LIMIT, FROM, TO, AFTER_SEQ),
)
def agent_rounds(agent_id: str) -> Response:
    """Evidence records (and folds) in chain order: ``?from=&to=`` (ISO 8601), ``after_seq``,
    ``limit`` (at most 1000)."""
    limit, since, until, after_seq = LIMIT.read(), FROM.read(), TO.read(), AFTER_SEQ.read()
    _store().get_agent(agent_id)
    items = _records().page(agent_id, since=since, until=until, after_seq=after_seq, limit=limit)
    views = [_round_view(item) for item in items]
    last = items[-1] if items else None
    next_after = None
    if last is not None and len(items) == limit:
        next_after = last.seq if isinstance(last, RecordSummary) else last.last_seq
    return jsonify(RoundPage(items=views, next_after_seq=next_after).model_dump(mode="json"))


@blueprint.get("/agents/<agent_id>/rounds/<round_id>")
@requires(Role.VIEWER)
@documented("One evidence record", answer=RoundRecordView)
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
        mode=view.mode.value,
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
