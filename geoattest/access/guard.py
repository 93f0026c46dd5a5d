"""Every route of a service declares who may call it; a request is let through only then.

Views are decorated ``@requires(Role.VIEWER|COMPLIANCE|ADMIN)`` or ``@public`` (enrolment, whose
caller the TPM proves; health). A route that declares nothing is refused (``403``): a new route
cannot be forgotten open, and a test walks every rule of each app's URL map to hold that.
API keys are required on loopback too. Every mutating call (not GET/HEAD/OPTIONS), allowed or not,
is written to the audit log: who, what, when, from where, and the answer's status. One exception
(ADR 14): a public route declared ``@recorded_by(...)`` writes its own record of each success in
the transaction that makes it (token issuance: ``verifier_tokens`` and the transparency log), so
its 2xx answers get no second audit line (a commit per call); its refusals still get one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Response, current_app, g, request

from geoattest.access.keys import Role
from geoattest.access.store import AccessStore, AuditEntry, Caller
from geoattest.errors import ApiKeyInvalid, ApiKeyRequired, RoleInsufficient

log = logging.getLogger(__name__)

ACCESS_ATTRIBUTE = "geoattest_access"
RECORDED_ATTRIBUTE = "geoattest_recorded_by"
PUBLIC = "public"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
View = TypeVar("View", bound=Callable[..., object])


def requires(role: Role) -> Callable[[View], View]:
    def mark(view: View) -> View:
        setattr(view, ACCESS_ATTRIBUTE, role)
        return view

    return mark


def public(view: View) -> View:
    setattr(view, ACCESS_ATTRIBUTE, PUBLIC)
    return view


def recorded_by(where: str) -> Callable[[View], View]:
    """Mark a public route whose successes are recorded in ``where`` (module docstring)."""

    def mark(view: View) -> View:
        setattr(view, RECORDED_ATTRIBUTE, where)
        return view

    return mark


def access_of(app: Flask, endpoint: str) -> Role | str | None:
    """What an endpoint declared (a ``Role``, ``PUBLIC``), or ``None``."""
    view = app.view_functions.get(endpoint)
    access: Role | str | None = getattr(view, ACCESS_ATTRIBUTE, None)
    return access


def install_access(app: Flask, store: AccessStore) -> None:
    app.extensions["geoattest.access"] = store
    app.before_request(_authorize)
    app.after_request(_audit)


def caller() -> Caller | None:
    """Who is calling (``None`` on public routes)."""
    found: Caller | None = g.get("caller")
    return found


def _store() -> AccessStore:
    store: AccessStore = current_app.extensions["geoattest.access"]
    return store


def _authorize() -> None:
    if request.endpoint is None:  # no such route: Flask answers 404 itself
        return
    access = access_of(current_app, request.endpoint)
    if access == PUBLIC:
        return
    if not isinstance(access, Role):
        log.error("route %s declares no access rule; refused", request.endpoint)
        raise RoleInsufficient(f"route {request.path} declares no access rule (refused)")
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise ApiKeyRequired(
            f"{request.method} {request.path} needs an API key: 'Authorization: Bearer gak_…' "
            f"with role {access} or higher"
        )
    found = _store().authenticate(header.removeprefix("Bearer ").strip())
    if found is None:
        raise ApiKeyInvalid("the API key is unknown, revoked or malformed")
    g.caller = found
    if not found.role.allows(access):
        raise RoleInsufficient(
            f"{request.method} {request.path} needs role {access}; key {found.name!r} is "
            f"{found.role}"
        )


def _audit(response: Response) -> Response:
    if request.method in _READ_METHODS:
        return response
    who = caller()
    if who is None and response.status_code < 300 and _recorded_elsewhere():
        return response
    try:
        _store().record_call(
            AuditEntry(
                at=dt.datetime.now(dt.UTC),
                actor=who.name if who else None,
                role=who.role.value if who else None,
                method=request.method,
                path=request.path,
                remote=request.remote_addr,
                status=response.status_code,
                request_id=g.get("request_id"),
            )
        )
    except Exception:  # the call itself is done; never answer 500 for its audit line
        log.exception("could not write the audit line of %s %s", request.method, request.path)
    return response


def _recorded_elsewhere() -> bool:
    if request.endpoint is None or access_of(current_app, request.endpoint) != PUBLIC:
        return False
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, RECORDED_ATTRIBUTE, None) is not None
