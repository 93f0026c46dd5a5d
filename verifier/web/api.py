"""The verifier's REST API under ``/v1``: policies and agents under verification."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify, request

from geoattest.http import parse_body, require_admin_token
from geoattest.wire import (
    AddAgentRequest,
    AgentStatusView,
    EventView,
    PolicyDocument,
    PolicyName,
    PolicyView,
)
from verifier.operations import Operations
from verifier.storage.hot_state import LiveStatus
from verifier.storage.sql import StoredPolicy, VerifiedAgentView, VerifierStore

blueprint = Blueprint("verifier", __name__, url_prefix="/v1")


def _ops() -> Operations:
    ops: Operations = current_app.extensions["geoattest.operations"]
    return ops


def _store() -> VerifierStore:
    store: VerifierStore = current_app.extensions["geoattest.verifier_store"]
    return store


@blueprint.before_request
def _require_admin_for_changes() -> None:
    if request.method not in ("GET", "HEAD"):
        require_admin_token("verifier")


@blueprint.put("/policies/<name>")
def put_policy(name: str) -> Response:
    _check_name(name)
    return jsonify(_policy_view(_ops().put_policy(name, parse_body(PolicyDocument))))


@blueprint.get("/policies")
def list_policies() -> Response:
    return jsonify({"policies": [_policy_view(p) for p in _store().list_policies()]})


@blueprint.get("/policies/<name>")
def get_policy(name: str) -> Response:
    return jsonify(_policy_view(_store().get_policy(name)))


@blueprint.delete("/policies/<name>")
def delete_policy(name: str) -> tuple[str, int]:
    _ops().delete_policy(name)
    return "", 204


@blueprint.post("/agents/<agent_id>")
def add_agent(agent_id: str) -> tuple[Response, int]:
    body = parse_body(AddAgentRequest)
    view = _ops().add_agent(agent_id, body.policy)
    return jsonify(_status_view(view, None)), 201


@blueprint.get("/agents")
def list_agents() -> Response:
    return jsonify({"agents": [_status_view(view, None) for view in _store().list_agents()]})


@blueprint.get("/agents/<agent_id>")
def show_agent(agent_id: str) -> Response:
    return jsonify(_status_view(*_ops().status(agent_id)))


@blueprint.put("/agents/<agent_id>/policy")
def set_agent_policy(agent_id: str) -> Response:
    body = parse_body(AddAgentRequest)
    return jsonify(_status_view(_ops().set_policy(agent_id, body.policy), None))


@blueprint.post("/agents/<agent_id>/<action>")
def act_on_agent(agent_id: str, action: str) -> Response:
    ops = _ops()
    actions = {
        "pause": ops.pause,
        "resume": ops.resume,
        "readmit": ops.readmit,
        "refresh": ops.refresh,
    }
    if action not in actions:
        return jsonify({"error": {"code": "not_found", "message": f"no action {action!r}"}}), 404  # type: ignore[return-value]
    return jsonify(_status_view(actions[action](agent_id), None))


@blueprint.delete("/agents/<agent_id>")
def remove_agent(agent_id: str) -> tuple[str, int]:
    _ops().remove(agent_id)
    return "", 204


@blueprint.get("/agents/<agent_id>/events")
def agent_events(agent_id: str) -> Response:
    events = [
        EventView(
            id=e.id,
            agent_id=e.agent_id,
            at=e.at,
            from_state=e.from_state,
            to_state=e.to_state,
            reason=e.reason,
            message=e.message,
            details=dict(e.details),
        ).model_dump(mode="json")
        for e in _store().events(agent_id)
    ]
    return jsonify({"events": events})


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok", "service": "verifier"})


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
    return view.model_dump(mode="json")


def _status_view(view: VerifiedAgentView, live: LiveStatus | None) -> dict[str, object]:
    status = AgentStatusView(
        agent_id=view.agent_id,
        policy=view.policy_name,
        state=(live.state if live is not None else view.state).value,
        reason=view.reason,
        message=view.message,
        state_since=view.state_since,
        last_round_at=(
            datetime.fromtimestamp(live.last_round_at, UTC)
            if live is not None and live.last_round_at is not None
            else None
        ),
        ima_entries_verified=live.memory.ima_offset() if live is not None else None,
    )
    return status.model_dump(mode="json")


__all__ = ["PolicyName", "blueprint"]
