"""Names the kernel prints raw, through the whole verifier path: wire JSON → ``parse_evidence`` →
``verify_round`` → evidence record → ``reverify_record``.

An honest node that runs ``/tmp/caf\\xe9`` (not UTF-8), a name with a newline or a backslash
under a ``/tmp/*`` exclude must pass, and the record must keep those bytes exactly; a path
that only looks excluded (``..`` segments, a sibling with the same prefix) must not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import replace

import pytest

from allowlists.boot import BootPolicy
from allowlists.ima.policy import RuntimePolicy
from geoattest.errors import EvidenceMalformed
from geoattest.pcr_banks import PcrBank
from geoattest.wire import EvidenceResponse, ImaWire, QuoteWire
from tests.unit.verifier.core.test_round import GOLDEN_PCR0, NOW, SoftwareNode
from verifier.core.evidence import parse_evidence
from verifier.core.policy import AttestationPolicy
from verifier.core.record import decode_record, encode_record
from verifier.core.reverify import reverify_record
from verifier.core.round import verify_round
from verifier.core.round_record import RecordOrigin, round_record
from verifier.core.round_types import RoundEvidence, RoundMemory, RoundResult
from verifier.core.states import Outcome

RAW_NAMES = [
    b"/tmp/caf\xe9",  # Latin-1 e-acute: not UTF-8
    b"/tmp/new\nline",
    b"/tmp/back\\slash\\xe9",  # a backslash, and text that looks like an escape
    b"/tmp/\xff\xfe\n\x01",
]


def _policy() -> AttestationPolicy:
    runtime = RuntimePolicy(
        digests={"/usr/bin/bash": frozenset({"sha256:" + hashlib.sha256(b"bash").hexdigest()})},
        excludes=("/tmp/*",),
    )
    return AttestationPolicy(
        name="names",
        version=1,
        boot=BootPolicy(golden={PcrBank.SHA256: {0: GOLDEN_PCR0}}),
        runtime=runtime,
        ima_banks=(PcrBank.SHA256,),
    )


def _over_the_wire(evidence: RoundEvidence) -> RoundEvidence:
    """What the verifier gets when the agent sends ``evidence`` as JSON."""
    response = EvidenceResponse(
        quote=QuoteWire(attest=evidence.attest, signature=evidence.signature),
        pcrs={
            bank: {str(i): v.hex() for i, v in values.items()}
            for bank, values in evidence.pcrs.items()
        },
        ima=ImaWire.from_entries(
            evidence.ima_offset,
            [line.encode("utf-8", "surrogateescape") for line in evidence.ima_lines],
        ),
    )
    body = response.model_dump_json(exclude_none=True)
    return parse_evidence(EvidenceResponse.model_validate_json(body), evidence.nonce)


def _judge(
    node: SoftwareNode, policy: AttestationPolicy, memory: RoundMemory
) -> tuple[RoundEvidence, RoundResult]:
    sent = node.answer(os.urandom(32), memory.ima_offset_for(policy.ima_banks))
    received = _over_the_wire(sent)
    assert received == sent  # byte for byte: the wire lost nothing
    return received, verify_round(
        received, ak=node.ak.public, policy=policy, previous=memory, now=NOW
    )


def _record_round_trip(
    node: SoftwareNode,
    policy: AttestationPolicy,
    memory: RoundMemory,
    evidence: RoundEvidence,
    result: RoundResult,
) -> None:
    record = round_record(
        agent_id="node-1",
        round_id="r1",
        started_at=NOW,
        ended_at=NOW + dt.timedelta(seconds=1),
        judged_at=NOW,
        origin=RecordOrigin(verifier_id="v1"),
        policy=policy,
        ak=node.ak.public,
        location_key=None,
        previous=memory,
        evidence=evidence,
        result=result,
    )
    encoded = encode_record(record)
    decoded = decode_record(encoded)
    assert decoded.evidence is not None
    assert list(decoded.evidence.ima_lines) == list(evidence.ima_lines)
    again = reverify_record(decoded, ak=node.ak.public, policy=policy)
    assert again.consistent, again.mismatches


def test_names_printed_raw_pass_under_an_exclude_and_re_verify_from_the_record() -> None:
    node, policy = SoftwareNode(), _policy()
    node.measure("/usr/bin/bash", b"bash")
    for name in RAW_NAMES:
        node.measure(name.decode("utf-8", "surrogateescape"), b"scratch " + name)
    evidence, result = _judge(node, policy, RoundMemory())
    assert result.outcome is Outcome.PASSED, result.message
    assert result.new_ima_entries == 1 + len(RAW_NAMES)
    _record_round_trip(node, policy, RoundMemory(), evidence, result)


def test_the_record_keeps_raw_entries_in_their_own_field() -> None:
    node, policy = SoftwareNode(), _policy()
    node.measure("/tmp/caf\udce9", b"x")
    node.measure("/tmp/plain", b"y")
    evidence, result = _judge(node, policy, RoundMemory())
    record = round_record(
        agent_id="node-1",
        round_id="r1",
        started_at=NOW,
        ended_at=NOW,
        judged_at=NOW,
        origin=RecordOrigin(verifier_id="v1"),
        policy=policy,
        ak=node.ak.public,
        location_key=None,
        previous=RoundMemory(),
        evidence=evidence,
        result=result,
    )
    encoded = encode_record(record)
    assert b'"raw":{"0":' in encoded  # the exact bytes, base64
    assert b"/tmp/caf\\\\xe9" in encoded  # and a readable stand-in in the lines
    with pytest.raises(EvidenceMalformed, match="not in canonical form"):
        decode_record(encoded.replace(b'"raw":{"0":', b'"raw":{"1":'))  # a raw entry moved


@pytest.mark.parametrize(
    "path",
    ["/tmp/../usr/bin/evil", "/tmp/./evil", "/tmp//evil", "/tmpfoo", "/tmpfoo/evil", "/tmp/a/b"],
)
def test_paths_that_only_look_excluded_fail_the_round(path: str) -> None:
    """Attack: a ``/tmp/*`` exclude does not cover ``..``-paths, siblings or deeper paths."""
    node, policy = SoftwareNode(), _policy()
    memory = _judge(node, policy, RoundMemory())[1].memory
    node.measure(path, b"evil payload")
    _, result = _judge(node, policy, memory)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "ima_entry_not_allowed"
    assert result.details["path"] == path


def test_an_old_agents_escaped_rendering_does_not_verify() -> None:
    """Before lines were carried byte-exact, agents sent ``\\\\xe9`` for the byte: the template
    hash of the escaped text is not the kernel's, so such a line fails (as it always did)."""
    node, policy = SoftwareNode(), _policy()
    node.measure("/tmp/caf\udce9", b"x")
    sent = node.answer(os.urandom(32), 0)
    escaped = [
        line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        for line in sent.ima_lines
    ]
    result = verify_round(
        replace(sent, ima_lines=escaped),
        ak=node.ak.public,
        policy=policy,
        previous=RoundMemory(),
        now=NOW,
    )
    assert result.reason == "ima_log_invalid"


def test_a_refused_name_that_is_not_utf8_is_recorded_printably() -> None:
    """The failure's details and message name the path; the record holds them as printable
    ASCII (a lone surrogate would break every write) and the entry itself byte-exact."""
    node, policy = SoftwareNode(), _policy()
    node.measure("/usr/bin/caf\udce9\n", b"evil payload")
    evidence, result = _judge(node, policy, RoundMemory())
    assert result.reason == "ima_entry_not_allowed"
    assert result.details["path"] == "/usr/bin/caf\udce9\n"
    record = round_record(
        agent_id="node-1",
        round_id="r1",
        started_at=NOW,
        ended_at=NOW,
        judged_at=NOW,
        origin=RecordOrigin(verifier_id="v1"),
        policy=policy,
        ak=node.ak.public,
        location_key=None,
        previous=RoundMemory(),
        evidence=evidence,
        result=result,
    )
    assert record.details["path"] == "/usr/bin/caf\\udce9\\n"
    assert record.message.isascii()
    decoded = decode_record(encode_record(record))
    assert decoded.evidence is not None
    assert list(decoded.evidence.ima_lines) == list(evidence.ima_lines)
    assert reverify_record(decoded, ak=node.ak.public, policy=policy).consistent
