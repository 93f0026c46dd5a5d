"""Judging one round: ask the agent for evidence over a fresh nonce, decide with ``verify_round``.

``judge`` never raises. Whatever happens ends as a typed result of one of the three kinds:
no usable answer is a reachability fault (``unreachable``); wrong evidence, and evidence the
checks could not evaluate, is an integrity failure (failing closed: a crash on odd input must
never leave the last good state standing); a crash of our own before any answer arrived is a
verifier fault (``stale`` once the lease runs out), because nothing was judged.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from geoattest.errors import IntegrityError, ReachabilityError
from geoattest.untrusted import printable
from geoattest.wire import EvidenceRequest
from geofence import GnssReceiver
from geofence.nearby import DecidedAt
from tpm import TpmPublic
from verifier.core.evidence import parse_evidence
from verifier.core.policy import AttestationPolicy
from verifier.core.reasons import Reason, reason_of_code
from verifier.core.round import verify_round
from verifier.core.round_types import RoundEvidence, RoundMemory, RoundResult
from verifier.core.states import Outcome
from verifier.engine.fetch import EvidenceSource
from verifier.metrics import FETCH_ERRORS

log = logging.getLogger(__name__)

NONCE_BYTES = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Judged:
    result: RoundResult
    evidence: RoundEvidence | None  # what the agent sent, when it sent evidence
    judged_at: dt.datetime | None  # the ``now`` the checks ran with


def judge(
    *,
    source: EvidenceSource,
    agent_url: str,
    tls_certificate: bytes,
    ak: TpmPublic,
    policy: AttestationPolicy,
    location_key: TpmPublic | None,
    memory: RoundMemory,
    clock: Callable[[], float],
    nonce: bytes | None = None,
    receiver: GnssReceiver | None = None,
    zone_hints: Mapping[str, DecidedAt] | None = None,
) -> Judged:
    """``nonce``: the round's nonce when the caller chose it (a fresh round binding a relying
    party's nonce); a new random one otherwise. ``receiver``: the agent's enrolled GNSS
    receiver, which the location check compares with the round's; ``zone_hints`` the agent's
    last full zone decisions (``RoundResult.zone_hints``, a cache)."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    request = round_request(policy, memory, nonce)
    try:
        evidence = parse_evidence(source.fetch_evidence(agent_url, tls_certificate, request), nonce)
    except ReachabilityError as e:
        log.debug("agent unreachable: %s", e.message)  # the runner logs the state change
        FETCH_ERRORS.labels(e.code).inc()
        reason = _reachability_reason(e.code)
        return _no_evidence(memory, Outcome.UNREACHABLE, reason, e.message)
    except IntegrityError as e:  # no location under a PoG policy, or evidence that is not
        log.warning("integrity failure %s: %s", e.code, e.message)
        return _no_evidence(memory, Outcome.INTEGRITY_FAILURE, reason_of_code(e.code), e.message)
    except Exception as e:  # our own bug before any verdict: nothing was judged
        log.exception("fetching evidence crashed")
        message = f"fetching evidence crashed: {printable(type(e).__name__)}"
        return _no_evidence(memory, Outcome.VERIFIER_FAULT, Reason.ROUND_CRASHED, message)
    judged_at = dt.datetime.fromtimestamp(clock(), dt.UTC)
    try:
        result = verify_round(
            evidence,
            ak=ak,
            policy=policy,
            previous=memory,
            now=judged_at,
            location_key=location_key,
            receiver=receiver,
            zone_hints=zone_hints,
        )
    except Exception:  # a bug on evidence we cannot judge: fail closed, never stay attested
        log.exception("evidence could not be verified")
        result = RoundResult(
            outcome=Outcome.INTEGRITY_FAILURE,
            memory=memory,
            reason=Reason.EVIDENCE_UNVERIFIABLE,
            message="the verifier could not evaluate this evidence (see the verifier log)",
        )
    if result.outcome is Outcome.INTEGRITY_FAILURE:
        log.warning("integrity failure %s: %s", result.reason, printable(result.message))
    return Judged(result=result, evidence=evidence, judged_at=judged_at)


def round_request(policy: AttestationPolicy, memory: RoundMemory, nonce: bytes) -> EvidenceRequest:
    """What a round asks the agent for: the same for a pull round and a push challenge."""
    return EvidenceRequest(
        nonce=nonce.hex(),
        pcrs=policy.pcr_selection(),
        ima_offset=memory.ima_offset_for(policy.ima_banks),
        include_location=policy.location is not None,
        include_boot_log=policy.boot_log_replay,
    )


def _reachability_reason(code: str) -> Reason:
    try:
        return Reason(code)
    except ValueError:
        return Reason.AGENT_UNREACHABLE


def _no_evidence(memory: RoundMemory, outcome: Outcome, reason: Reason, message: str) -> Judged:
    return Judged(
        result=RoundResult(outcome=outcome, memory=memory, reason=reason, message=message),
        evidence=None,
        judged_at=None,
    )
