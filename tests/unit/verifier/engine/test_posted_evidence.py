"""A push round judges the posted evidence only while it still asks what its challenge asked."""

from __future__ import annotations

import pytest

from geoattest.errors import AgentProtocolMismatch
from geoattest.pcr_banks import PcrBank
from geoattest.wire import EvidenceRequest, EvidenceResponse
from verifier.engine.push import PostedEvidence, asks_digest

NONCE = "ab" * 32


def _asked(ima_offset: int) -> EvidenceRequest:
    return EvidenceRequest(nonce=NONCE, pcrs={PcrBank.SHA256: [10]}, ima_offset=ima_offset)


def _posted(asked: EvidenceRequest) -> PostedEvidence:
    evidence = EvidenceResponse.model_construct()  # the source hands it on unread
    return PostedEvidence(evidence, asks_digest(asked))


def test_the_round_asking_what_the_challenge_asked_gets_the_posted_evidence() -> None:
    posted = _posted(_asked(ima_offset=21))
    assert posted.fetch_evidence("", b"", _asked(ima_offset=21)) is posted.evidence


def test_a_round_that_moved_on_is_a_protocol_fault_not_a_verdict() -> None:
    posted = _posted(_asked(ima_offset=21))
    with pytest.raises(AgentProtocolMismatch, match="moved on"):
        posted.fetch_evidence("", b"", _asked(ima_offset=23))  # another round committed


def test_the_digest_covers_what_is_quoted_but_not_the_nonce() -> None:
    asked = _asked(ima_offset=0)
    assert asks_digest(asked) == asks_digest(asked.model_copy(update={"nonce": "cd" * 32}))
    assert asks_digest(asked) != asks_digest(asked.model_copy(update={"include_location": True}))
