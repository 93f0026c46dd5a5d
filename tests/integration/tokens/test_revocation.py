"""Revocation and the ledger's commit-time checks: a failure stops issuance and lists issued tokens
in the status document within one round; no token is stored on ended trust, a superseded round
or a snapshot past its lease."""

from __future__ import annotations

import datetime as dt
import secrets
import time

import pytest

from geoattest.errors import (
    AgentNotAttested,
)
from tests.integration.tokens.calls import (
    first_agent,
    status_within,
    verify_for_svc,
)
from tests.support.token_requests import (
    BASH,
)
from tests.support.token_stack import TokenStack, order
from verifier.engine.runtime import lease_defaults_of
from verifier.storage.records import StoredRecord
from verifier.storage.tokens import TokenDraft
from verifier.tokens.snapshot import Snapshots
from verifier.tokens.status import read_status
from verifier.tokens.verify import Rejected, RejectReason, VerifiedToken

pytestmark = [pytest.mark.redis]


# --- revocation -----------------------------------------------------------------------------------


def test_a_failure_stops_issuance_and_revokes_tokens_within_one_round(stack: TokenStack) -> None:
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    client = stack.client(agent_id)
    issued = client.request(order(sim))
    before = read_status(stack.status(), stack.keys(), dt.datetime.now(dt.UTC))
    assert not isinstance(before, Rejected)
    assert issued.jti not in before.revoked
    sim.measure("/tmp/miner", content=b"not allowed")  # the node's path
    stack.attest(agent_id)  # one round: failed
    assert stack.runner.state(agent_id) == "failed"
    with pytest.raises(AgentNotAttested):
        client.request(order(sim))
    after = status_within(stack, 1.0, lambda status: issued.jti in status.revoked)
    verdict = verify_for_svc(stack, issued.token, revoked=after.revoked)
    assert isinstance(verdict, Rejected)
    assert verdict.reason is RejectReason.REVOKED
    stored = stack.app.extensions["geoattest.token_ledger"].get(issued.jti)
    assert stored.revoked_at is not None
    other = sorted(stack.runner.sims)[1]
    assert stack.client(other).request(order(stack.runner.sims[other])).token  # others go on


def test_the_ledger_keeps_no_token_of_an_agent_whose_trust_ended(stack: TokenStack) -> None:
    """The commit-time check: a token built on a snapshot taken before a failure committed is
    not stored (and so never handed out)."""
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    ledger = stack.app.extensions["geoattest.token_ledger"]
    record = stack.runner.records.latest_passed(agent_id)
    assert record is not None
    assert ledger.store(_draft(agent_id, record))
    sim.measure("/tmp/miner", content=b"not allowed")
    stack.attest(agent_id)
    late = _draft(agent_id, record)
    assert not ledger.store(late)
    assert ledger.get(late.jti) is None


def test_the_ledger_keeps_no_token_built_on_a_round_a_newer_one_superseded(
    stack: TokenStack,
) -> None:
    """The commit-time check: claims of a passed round that is no longer the newest passed one
    (the node may be in another zone now) are not stored."""
    agent_id = first_agent(stack)
    ledger = stack.app.extensions["geoattest.token_ledger"]
    old = stack.runner.records.latest_passed(agent_id)
    assert old is not None
    stack.attest(agent_id)  # a newer round passes
    draft = _draft(agent_id, old)
    assert not ledger.store(draft)
    assert ledger.get(draft.jti) is None


def test_a_token_asked_for_on_a_cached_snapshot_names_the_newest_passed_round(
    stack: TokenStack,
) -> None:
    """The snapshot is cached (1 s); a round that passes meanwhile is not announced. The token
    the ledger refuses on the older round is built once more on a fresh read."""
    agent_id = first_agent(stack)
    sim = stack.runner.sims[agent_id]
    client = stack.client(agent_id)
    first = client.request(order(sim))  # reads and caches the snapshot
    stack.attest(agent_id)
    newest = stack.runner.records.latest_passed(agent_id)
    assert newest is not None
    assert newest.record.seq > first.record_seq
    again = client.request(order(sim))
    assert again.record_seq == newest.record.seq
    verdict = verify_for_svc(stack, again.token)
    assert isinstance(verdict, VerifiedToken), verdict
    assert verdict.record_digest == newest.digest.hex()


def test_a_cached_snapshot_is_never_served_past_its_lease(stack: TokenStack) -> None:
    """However long the cache may keep a snapshot, past the lease it read the agent is read
    again (and found stale: no token from a cache that outlived the lease)."""
    agent_id = first_agent(stack)
    clock = [time.time()]
    snapshots = Snapshots(
        store=stack.runner.store,
        records=stack.runner.records,
        hot=stack.runner.hot,
        lease=lease_defaults_of(stack.settings),
        zones=None,
        max_age=3600.0,
        clock=lambda: clock[0],
    )
    cached = snapshots.of(agent_id)
    assert cached.lease.attested
    assert cached.lease.expires_at is not None
    clock[0] = cached.lease.expires_at.timestamp() - 0.5
    assert snapshots.of(agent_id) is cached  # within the lease: the cache answers
    clock[0] = cached.lease.expires_at.timestamp() + 0.01
    late = snapshots.of(agent_id)
    assert late is not cached
    assert not late.lease.attested


def _draft(agent_id: str, passed: StoredRecord) -> TokenDraft:
    """A PoR token for ``agent_id`` built on the round of ``passed``, as the service drafts it."""
    now = dt.datetime.now(dt.UTC)
    return TokenDraft(
        jti=secrets.token_urlsafe(16),
        agent_id=agent_id,
        type="por",
        audience="svc",
        workload_sha256=BASH,
        issued_at=now,
        expires_at=now + dt.timedelta(seconds=5),
        record_seq=passed.record.seq,
        record_ended_at=passed.record.ended_at,
        max_age=dt.timedelta(seconds=30),
        token="x",  # noqa: S106  # not a secret
    )
