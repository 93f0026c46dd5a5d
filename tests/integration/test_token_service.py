"""The token service over HTTP with real Redis and SQLite, rounds by the production runner over
agent simulators: issuance on the lease, TPM-bound sessions and their attacks, approved runtime,
fresh rounds with a relying party's nonce, revocation in the status document, key rotation."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import REGISTRY

from geoattest.errors import (
    AgentNotAttested,
    CnfProofInvalid,
    FreshRoundFailed,
    TokenLocationUnavailable,
)
from geoattest.jose import (
    b64url,
    compact_json,
    encode_jws,
    es256_sign,
    public_jwk,
    thumbprint,
)
from geoattest.wire_tokens import (
    CNF_PROOF_TYP,
    CnfWire,
    PublicJwk,
)
from tests.support.access import bearer
from tests.support.token_requests import (
    BASH,
    ask_challenge,
    open_session,
    post_session,
    session_body,
    session_quote,
    signed_request,
)
from tests.support.token_stack import TokenStack, order, token_stack
from tpm import parse_tpms_attest
from verifier.core.record import decode_record
from verifier.engine.runtime import lease_defaults_of
from verifier.storage.tokens import TokenDraft
from verifier.tokens.claims import EarStatus, WorkloadMeasure
from verifier.tokens.snapshot import Snapshots
from verifier.tokens.status import RevocationStatus, read_status
from verifier.tokens.verify import Expected, Rejected, RejectReason, VerifiedToken, verify_token

pytestmark = [pytest.mark.redis]


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[TokenStack]:
    with token_stack(tmp_path, redis_url, agents=2) as running:
        for agent_id, sim in running.runner.sims.items():
            sim.measure("/usr/bin/bash", content=b"bash")
            running.attest(agent_id)
        yield running


def _first(stack: TokenStack) -> str:
    return sorted(stack.runner.sims)[0]


def _verify(stack: TokenStack, token: str, **expect: object) -> VerifiedToken | Rejected:
    expected = Expected(audience="svc", issuer="https://verifier.test", **expect)  # type: ignore[arg-type]
    return verify_token(token, stack.keys(), expected, dt.datetime.now(dt.UTC))


def _status_within(
    stack: TokenStack, seconds: float, holds: Callable[[RevocationStatus], bool]
) -> RevocationStatus:
    """The status document as soon as ``holds`` (polled; the listener re-signs it on events)."""
    deadline = time.monotonic() + seconds
    while True:
        status = read_status(stack.status(), stack.keys(), dt.datetime.now(dt.UTC))
        assert not isinstance(status, Rejected), status
        if holds(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def _post_request(stack: TokenStack, body: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/tokens",
        data=body,
        headers={"Content-Type": "application/jose"},
        timeout=10,
    )


def _session(stack: TokenStack, agent_id: str) -> tuple[str, ec.EllipticCurvePrivateKey]:
    return open_session(stack.url, agent_id, stack.runner.sims[agent_id])


# --- issuance -------------------------------------------------------------------------------------


def test_a_token_on_the_lease_verifies_and_is_stored(stack: TokenStack) -> None:
    agent_id = _first(stack)
    client = stack.client(agent_id)
    view = client.request(order(stack.runner.sims[agent_id]))
    verdict = _verify(stack, view.token, workloads=frozenset({BASH}))
    assert isinstance(verdict, VerifiedToken), verdict
    assert verdict.agent_id == agent_id
    assert verdict.status is EarStatus.AFFIRMING
    assert verdict.workload_measured_by is WorkloadMeasure.IMA_ALLOWLISTED
    assert verdict.subject == f"spiffe://geoattest.local/node/{agent_id}/sha256/{BASH.hex()}"
    stored = stack.app.extensions["geoattest.token_ledger"].get(view.jti)
    assert stored is not None
    assert stored.token == view.token
    assert stored.record_seq == verdict.record_seq == view.record_seq
    assert stored.workload_sha256 == BASH
    assert stored.revoked_at is None
    record = stack.runner.records.latest_passed(agent_id)
    assert record is not None
    assert record.digest.hex() == verdict.record_digest


def test_an_executable_the_ima_log_never_measured_gets_a_weaker_tier(stack: TokenStack) -> None:
    agent_id = _first(stack)
    other = hashlib.sha256(b"a program nobody measured").digest()
    view = stack.client(agent_id).request(order(stack.runner.sims[agent_id], workload_sha256=other))
    weak = _verify(stack, view.token)
    assert isinstance(weak, Rejected)
    assert weak.reason is RejectReason.WEAK_TIER
    accepted = _verify(stack, view.token, min_tier=EarStatus.WARNING)
    assert isinstance(accepted, VerifiedToken)
    assert accepted.workload_measured_by is WorkloadMeasure.AGENT


def test_an_excluded_path_is_a_weaker_claim_than_an_allowlisted_digest(stack: TokenStack) -> None:
    """The simulators' policy excludes /var/log/*: measured there, a file is not vouched for."""
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    sim.measure("/var/log/tool", content=b"a tool under an excluded path")
    stack.attest(agent_id)
    digest = hashlib.sha256(b"a tool under an excluded path").digest()
    view = stack.client(agent_id).request(order(sim, workload_sha256=digest))
    accepted = _verify(stack, view.token, min_tier=EarStatus.WARNING)
    assert isinstance(accepted, VerifiedToken)
    assert accepted.workload_measured_by is WorkloadMeasure.IMA_EXCLUDED


def test_tokens_issued_and_refused_are_counted(stack: TokenStack) -> None:
    """``geoattest_tokens_issued`` by type and ``geoattest_tokens_refused`` by error code (this
    process's registry: the API serves it on ``/metrics``)."""
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    issued = value("geoattest_tokens_issued_total", type="por")
    refused = value("geoattest_tokens_refused_total", code="token_location_unavailable")
    stack.client(agent_id).request(order(sim))
    with pytest.raises(TokenLocationUnavailable):
        stack.client(agent_id).request(order(sim, type="pog"))
    assert value("geoattest_tokens_issued_total", type="por") == issued + 1
    assert value("geoattest_tokens_refused_total", code="token_location_unavailable") == (
        refused + 1
    )


def test_an_issued_token_is_recorded_once_and_a_refusal_is_audited(stack: TokenStack) -> None:
    """A 201 is recorded by the token row and its log entry (no audit line: a commit per token,
    ADR 14); a refused request still gets its audit line, with its status."""
    agent_id = _first(stack)
    access = stack.app.extensions["geoattest.access"]
    session_id, key = _session(stack, agent_id)
    before = {entry.id for entry in access.audit(limit=1000)}
    issued = _post_request(stack, signed_request(agent_id, session_id, key))
    assert issued.status_code == 201, issued.text
    forged = signed_request(agent_id, session_id, ec.generate_private_key(ec.SECP256R1()))
    assert _post_request(stack, forged).status_code == 401
    new = [e for e in access.audit(limit=1000) if e.id not in before and e.path == "/v1/tokens"]
    assert [(e.method, e.status) for e in new] == [("POST", 401)]
    assert stack.app.extensions["geoattest.token_ledger"].get(issued.json()["jti"]) is not None


def test_no_token_without_a_lease(stack: TokenStack) -> None:
    agent_id = _first(stack)
    client = stack.client(agent_id)
    client.request(order(stack.runner.sims[agent_id]))  # opens the session while attested
    stack.runner.store.get_agent(agent_id)
    # Let the lease run out: the policy's default lease is 2 x 0.2 s + 5 s + 1 s.
    stale_at = time.time() + 6.6
    while time.time() < stale_at:
        time.sleep(0.2)
    with pytest.raises(AgentNotAttested, match="is stale: no valid lease"):
        client.request(order(stack.runner.sims[agent_id]))


def test_a_pog_token_needs_a_location_policy(stack: TokenStack) -> None:
    agent_id = _first(stack)
    with pytest.raises(TokenLocationUnavailable):
        stack.client(agent_id).request(order(stack.runner.sims[agent_id], type="pog"))


# --- revocation -----------------------------------------------------------------------------------


def test_a_failure_stops_issuance_and_revokes_tokens_within_one_round(stack: TokenStack) -> None:
    agent_id = _first(stack)
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
    after = _status_within(stack, 1.0, lambda status: issued.jti in status.revoked)
    verdict = _verify(stack, issued.token, revoked=after.revoked)
    assert isinstance(verdict, Rejected)
    assert verdict.reason is RejectReason.REVOKED
    stored = stack.app.extensions["geoattest.token_ledger"].get(issued.jti)
    assert stored.revoked_at is not None
    other = sorted(stack.runner.sims)[1]
    assert stack.client(other).request(order(stack.runner.sims[other])).token  # others go on


def test_the_ledger_keeps_no_token_of_an_agent_whose_trust_ended(stack: TokenStack) -> None:
    """The commit-time check: a token built on a snapshot taken before a failure committed is
    not stored (and so never handed out)."""
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    ledger = stack.app.extensions["geoattest.token_ledger"]
    record = stack.runner.records.latest_passed(agent_id)
    assert record is not None
    now = dt.datetime.now(dt.UTC)

    def draft() -> TokenDraft:
        return TokenDraft(
            jti=secrets.token_urlsafe(16),
            agent_id=agent_id,
            type="por",
            audience="svc",
            workload_sha256=BASH,
            issued_at=now,
            expires_at=now + dt.timedelta(seconds=5),
            record_seq=record.record.seq,
            record_ended_at=record.record.ended_at,
            max_age=dt.timedelta(seconds=30),
            token="x",  # noqa: S106  # not a secret
        )

    assert ledger.store(draft())
    sim.measure("/tmp/miner", content=b"not allowed")
    stack.attest(agent_id)
    late = draft()
    assert not ledger.store(late)
    assert ledger.get(late.jti) is None


def test_the_ledger_keeps_no_token_built_on_a_round_a_newer_one_superseded(
    stack: TokenStack,
) -> None:
    """The commit-time check: claims of a passed round that is no longer the newest passed one
    (the node may be in another zone now) are not stored."""
    agent_id = _first(stack)
    ledger = stack.app.extensions["geoattest.token_ledger"]
    old = stack.runner.records.latest_passed(agent_id)
    assert old is not None
    stack.attest(agent_id)  # a newer round passes
    now = dt.datetime.now(dt.UTC)
    draft = TokenDraft(
        jti=secrets.token_urlsafe(16),
        agent_id=agent_id,
        type="por",
        audience="svc",
        workload_sha256=BASH,
        issued_at=now,
        expires_at=now + dt.timedelta(seconds=5),
        record_seq=old.record.seq,
        record_ended_at=old.record.ended_at,
        max_age=dt.timedelta(seconds=30),
        token="x",  # noqa: S106  # not a secret
    )
    assert not ledger.store(draft)
    assert ledger.get(draft.jti) is None


def test_a_token_asked_for_on_a_cached_snapshot_names_the_newest_passed_round(
    stack: TokenStack,
) -> None:
    """The snapshot is cached (1 s); a round that passes meanwhile is not announced. The token
    the ledger refuses on the older round is built once more on a fresh read."""
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    client = stack.client(agent_id)
    first = client.request(order(sim))  # reads and caches the snapshot
    stack.attest(agent_id)
    newest = stack.runner.records.latest_passed(agent_id)
    assert newest is not None
    assert newest.record.seq > first.record_seq
    again = client.request(order(sim))
    assert again.record_seq == newest.record.seq
    verdict = _verify(stack, again.token)
    assert isinstance(verdict, VerifiedToken), verdict
    assert verdict.record_digest == newest.digest.hex()


def test_a_cached_snapshot_is_never_served_past_its_lease(stack: TokenStack) -> None:
    """However long the cache may keep a snapshot, past the lease it read the agent is read
    again (and found stale: no token from a cache that outlived the lease)."""
    agent_id = _first(stack)
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


# --- sessions: the agent proves it is the agent ---------------------------------------------------


def test_a_request_not_signed_by_the_session_key_is_refused(stack: TokenStack) -> None:
    agent_id = _first(stack)
    session_id, _ = _session(stack, agent_id)
    forged = signed_request(agent_id, session_id, ec.generate_private_key(ec.SECP256R1()))
    response = _post_request(stack, forged)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_request_signature_invalid"


def test_a_request_naming_another_agents_session_is_refused(stack: TokenStack) -> None:
    first, second = sorted(stack.runner.sims)
    session_id, key = _session(stack, first)
    _session(stack, second)  # the other agent has a session of its own
    response = _post_request(stack, signed_request(second, session_id, key))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_session_unknown"


def test_a_replayed_request_is_refused(stack: TokenStack) -> None:
    agent_id = _first(stack)
    session_id, key = _session(stack, agent_id)
    request = signed_request(agent_id, session_id, key)
    assert _post_request(stack, request).status_code == 201
    again = _post_request(stack, request)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "token_request_replayed"
    old = signed_request(agent_id, session_id, key, iat=int(time.time()) - 300)
    assert _post_request(stack, old).json()["error"]["code"] == "token_request_replayed"


def test_a_session_quoted_by_another_tpm_is_refused(stack: TokenStack) -> None:
    first, second = sorted(stack.runner.sims)
    challenge = ask_challenge(stack.url, first)
    key = ec.generate_private_key(ec.SECP256R1())
    quoted = session_quote(stack.runner.sims[second], first, challenge, key)  # not first's AK
    response = post_session(stack.url, session_body(first, challenge["challenge"], key, quoted))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "token_session_refused"


def test_a_session_quote_binding_another_key_is_refused(stack: TokenStack) -> None:
    agent_id = _first(stack)
    challenge = ask_challenge(stack.url, agent_id)
    quoted_key, presented_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    quoted = session_quote(stack.runner.sims[agent_id], agent_id, challenge, quoted_key)
    response = post_session(
        stack.url, session_body(agent_id, challenge["challenge"], presented_key, quoted)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "token_session_refused"


def test_a_challenge_is_used_once_and_only_for_its_agent(stack: TokenStack) -> None:
    first, second = sorted(stack.runner.sims)
    challenge = ask_challenge(stack.url, first)
    other = ask_challenge(stack.url, first)
    assert challenge["challenge"] != other["challenge"]
    key = ec.generate_private_key(ec.SECP256R1())

    def open_for(agent_id: str) -> requests.Response:
        quoted = session_quote(stack.runner.sims[agent_id], agent_id, challenge, key)
        return post_session(stack.url, session_body(agent_id, challenge["challenge"], key, quoted))

    assert open_for(second).json()["error"]["code"] == "token_challenge_unknown"
    assert open_for(first).status_code == 201
    assert open_for(first).json()["error"]["code"] == "token_challenge_unknown"


def test_a_reboot_needs_a_new_session(stack: TokenStack) -> None:
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    client = stack.client(agent_id)
    client.request(order(sim))
    sim.reboot()
    sim.measure("/usr/bin/bash", content=b"bash")
    stack.attest(agent_id, rounds=2)  # rebooted, then a full round of the new boot
    assert stack.runner.state(agent_id) == "attested"
    view = client.request(order(sim))  # the old session is refused, a new one opens
    assert client._quoter.quotes == 2  # type: ignore[attr-defined]  # SimQuoter
    host = json.loads(__import__("base64").urlsafe_b64decode(view.token.split(".")[1] + "=="))[
        "submods"
    ]["host"]["geoattest.host"]
    assert host["reset_count"] == sim.tpm.reset_count
    verdict = _verify(stack, view.token)
    assert isinstance(verdict, VerifiedToken), verdict  # the new boot measured bash again


def test_a_session_of_an_earlier_boot_is_refused_even_without_the_revocation_channel(
    stack: TokenStack,
) -> None:
    """The listener normally drops the session when the reboot ends trust; with no listener,
    the session's boot still differs from the record's and the request is refused."""
    stack.app.extensions["geoattest.token_listener"].stop()
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    session_id, key = _session(stack, agent_id)
    assert _post_request(stack, signed_request(agent_id, session_id, key)).status_code == 201
    sim.reboot()
    sim.measure("/usr/bin/bash", content=b"bash")
    stack.attest(agent_id, rounds=2)
    assert stack.runner.state(agent_id) == "attested"
    time.sleep(0.3)  # the snapshot (0.25 s) sees the new boot's round
    response = _post_request(stack, signed_request(agent_id, session_id, key))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "token_session_unknown"
    assert "rebooted" in response.json()["error"]["message"]


# --- cnf ------------------------------------------------------------------------------------------


def _cnf(key: ec.EllipticCurvePrivateKey, **claims: object) -> CnfWire:
    body: dict[str, object] = {"aud": "svc", "type": "por", "iat": int(time.time())}
    body.update(claims)
    proof = encode_jws(
        {"alg": "ES256", "typ": CNF_PROOF_TYP}, compact_json(body), lambda d: es256_sign(key, d)
    )
    return CnfWire(jwk=PublicJwk.model_validate(public_jwk(key.public_key())), proof=proof)


def test_a_proven_cnf_key_is_bound_and_an_unproven_one_refused(stack: TokenStack) -> None:
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    key = ec.generate_private_key(ec.SECP256R1())
    view = stack.client(agent_id).request(order(sim, cnf=_cnf(key)))
    verdict = _verify(stack, view.token, cnf_jkt=thumbprint(key.public_key()))
    assert isinstance(verdict, VerifiedToken), verdict
    stolen = _cnf(key)
    other = ec.generate_private_key(ec.SECP256R1())
    swapped = CnfWire(
        jwk=PublicJwk.model_validate(public_jwk(other.public_key())), proof=stolen.proof
    )
    with pytest.raises(CnfProofInvalid):
        stack.client(agent_id).request(order(sim, cnf=swapped))
    with pytest.raises(CnfProofInvalid):
        stack.client(agent_id).request(order(sim, cnf=_cnf(key, aud="another-service")))


# --- fresh rounds ---------------------------------------------------------------------------------


def test_a_relying_party_nonce_runs_a_fresh_round_bound_into_the_quote(stack: TokenStack) -> None:
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    rp_nonce = os.urandom(16)
    before = stack.runner.store.get_agent(agent_id).records
    view = stack.client(agent_id).request(order(sim, nonce=b64url(rp_nonce)))
    verdict = _verify(stack, view.token, nonce=rp_nonce)
    assert isinstance(verdict, VerifiedToken), verdict
    assert verdict.record_seq > before  # a new round, recorded
    stored = stack.runner.records.get(agent_id, verdict.claims["geoattest.record"]["round_id"])  # type: ignore[index]
    evidence = decode_record(stored.canonical).evidence
    assert evidence is not None
    assert evidence.nonce.startswith(rp_nonce)
    assert len(evidence.nonce) == len(rp_nonce) + 16
    quoted = parse_tpms_attest(evidence.attest).extra_data
    from geoattest.wire import quote_qualifying_data

    assert quoted == quote_qualifying_data(evidence.nonce, None)


def test_a_fresh_round_that_fails_fails_the_agent_and_gives_no_token(stack: TokenStack) -> None:
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    client = stack.client(agent_id)
    client.request(order(sim))
    sim.measure("/tmp/miner", content=b"not allowed")
    with pytest.raises(FreshRoundFailed, match="ima_entry_not_allowed"):
        client.request(order(sim, nonce=b64url(os.urandom(16))))
    assert stack.runner.state(agent_id) == "failed"


def test_a_nonce_of_the_wrong_size_is_refused(stack: TokenStack) -> None:
    agent_id = _first(stack)
    session_id, key = _session(stack, agent_id)
    for nonce in (os.urandom(4), os.urandom(49)):
        response = _post_request(
            stack, signed_request(agent_id, session_id, key, nonce=b64url(nonce))
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "token_request_invalid"


# --- keys -----------------------------------------------------------------------------------------


def test_tokens_signed_before_a_rotation_verify_after_it(stack: TokenStack) -> None:
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    before = stack.client(agent_id).request(order(sim))
    rotated = requests.post(
        f"{stack.url}/v1/tokens/keys/rotate", headers=bearer(stack.admin_key), timeout=10
    )
    assert rotated.status_code == 200, rotated.text
    after = stack.client(agent_id).request(order(sim))
    assert before.token.split(".")[0] != after.token.split(".")[0]
    for token in (before.token, after.token):
        assert isinstance(_verify(stack, token), VerifiedToken)
    jwks = requests.get(f"{stack.url}/.well-known/jwks.json", timeout=10)
    assert "max-age" in jwks.headers["Cache-Control"]
    assert all("d" not in key for key in jwks.json()["keys"])


def test_garbage_token_requests_are_4xx(stack: TokenStack) -> None:
    for body in ("", "not a jws", "a.b.c", "e30.e30." + "A" * 86, "x" * 20000):
        response = _post_request(stack, body)
        assert 400 <= response.status_code < 500, (body[:20], response.text)
        assert response.json()["error"]["code"]


def test_a_session_quote_from_another_boot_is_refused(stack: TokenStack) -> None:
    """The node rebooted after its last passed round (its lease still runs): a quote of the new
    boot opens no session until a round of that boot has passed."""
    agent_id = _first(stack)
    sim = stack.runner.sims[agent_id]
    sim.reboot()
    challenge = ask_challenge(stack.url, agent_id)
    key = ec.generate_private_key(ec.SECP256R1())
    quoted = session_quote(sim, agent_id, challenge, key)
    response = post_session(stack.url, session_body(agent_id, challenge["challenge"], key, quoted))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "token_session_refused"
    assert "boot" in response.json()["error"]["message"]
