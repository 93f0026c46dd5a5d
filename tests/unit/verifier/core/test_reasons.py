"""One vocabulary: every error a round can end with has its ``Reason``."""

from __future__ import annotations

import geoattest.errors as errors
from verifier.core.reasons import INTEGRITY_REASONS, Reason, reason_of_code


def _subclasses(cls: type[errors.GeoattestError]) -> list[type[errors.GeoattestError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_integrity_error_code_is_an_integrity_reason() -> None:
    for cls in _subclasses(errors.IntegrityError):
        if cls in (errors.CredentialActivationRefused, errors.RegistrarAnswerInvalid):
            continue  # raised at enrolment or when adding an agent, never by a round
        if issubclass(cls, errors.ProofInvalid):
            continue  # raised checking transparency logs and bundles, never by a round
        assert Reason(cls.code) in INTEGRITY_REASONS, cls.__name__


def test_every_agent_reachability_code_is_a_reason() -> None:
    agent_errors = [c for c in _subclasses(errors.ReachabilityError) if c.code.startswith("agent_")]
    assert len(agent_errors) >= 5
    for cls in agent_errors:
        assert Reason(cls.code) not in INTEGRITY_REASONS


def test_an_unknown_code_fails_closed() -> None:
    assert reason_of_code("something_new") is Reason.EVIDENCE_UNVERIFIABLE
    assert reason_of_code("nonce_mismatch") is Reason.NONCE_MISMATCH
