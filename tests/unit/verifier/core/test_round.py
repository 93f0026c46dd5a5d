"""``verify_round`` on genuine-format evidence from a software node: each attack is refused with
its reason code, and each check has a test that fails if the check is removed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from allowlists.boot import BootPolicy
from allowlists.ima.policy import RuntimePolicy
from allowlists.ima.template import encode_entry, template_hash
from geoattest.pcr_banks import PcrBank
from geoattest.wire import quote_qualifying_data
from geofence import decode_evidence
from tests.support.software_tpm import SoftwareAk
from tpm import Alg, ClockInfo
from verifier.core.policy import AttestationPolicy
from verifier.core.round import verify_round
from verifier.core.round_types import Check, RoundEvidence, RoundMemory, RoundResult, Verdict
from verifier.core.states import Outcome

GOLDEN_PCR0 = hashlib.sha256(b"firmware v1").digest()
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass
class SoftwareNode:
    """A node's TPM state and IMA log, kept in software, that answers rounds like an agent."""

    ak: SoftwareAk = field(default_factory=SoftwareAk.ecc)
    pcr0: bytes = GOLDEN_PCR0
    pcr10: bytes = bytes(32)
    pcr10_sha1: bytes = bytes(20)  # the node also has a sha1 bank, quoted with PCR 10 only
    log: list[str] = field(default_factory=list)

    def measure(self, path: str, content: bytes) -> None:
        entry = encode_entry(path=path, digest=hashlib.sha256(content).digest())
        self.log.append(entry.line)
        self.extend(template_hash(entry.template_data, PcrBank.SHA256))
        sha1 = template_hash(entry.template_data, PcrBank.SHA1)
        self.pcr10_sha1 = hashlib.sha1(self.pcr10_sha1 + sha1).digest()  # noqa: S324  # sha1 bank

    def extend(self, digest: bytes) -> None:
        self.pcr10 = hashlib.sha256(self.pcr10 + digest).digest()

    def reboot(self) -> None:
        clock = self.ak.clock
        # A TPM's clock survives a reboot (kept in NV); resetCount counts the reboot.
        self.ak.clock = ClockInfo(
            clock=clock.clock + 50, reset_count=clock.reset_count + 1, restart_count=0, safe=True
        )
        self.pcr10, self.pcr10_sha1, self.log = bytes(32), bytes(20), []

    def tick(self) -> None:
        clock = self.ak.clock
        self.ak.clock = replace(clock, clock=clock.clock + 2000)

    def answer(self, nonce: bytes, offset: int) -> RoundEvidence:
        self.tick()
        values = {Alg.SHA256: {0: self.pcr0, 10: self.pcr10}, Alg.SHA1: {10: self.pcr10_sha1}}
        attest, signature = self.ak.quote(quote_qualifying_data(nonce, None), values)
        return RoundEvidence(
            nonce=nonce,
            attest=attest,
            signature=signature,
            pcrs={
                PcrBank.SHA256: {0: self.pcr0, 10: self.pcr10},
                PcrBank.SHA1: {10: self.pcr10_sha1},
            },
            ima_offset=offset,
            ima_lines=self.log[offset:],
        )

    def geofenced_answer(
        self, location: bytes, location_signature: bytes, offset: int = 0
    ) -> RoundEvidence:
        """An answer whose quote binds the signed ``location`` evidence (its nonce is the
        round's), over the SHA-256 bank only, as a geofenced agent sends it."""
        nonce = decode_evidence(location).nonce
        self.tick()
        values = {0: self.pcr0, 10: self.pcr10}
        attest, signature = self.ak.quote(
            quote_qualifying_data(nonce, location), {Alg.SHA256: values}
        )
        return RoundEvidence(
            nonce=nonce,
            attest=attest,
            signature=signature,
            pcrs={PcrBank.SHA256: values},
            ima_offset=offset,
            ima_lines=self.log[offset:],
            location=location,
            location_signature=location_signature,
        )


def _policy(node: SoftwareNode, allowed: dict[str, bytes]) -> AttestationPolicy:
    runtime = RuntimePolicy(
        digests={
            path: frozenset({"sha256:" + hashlib.sha256(content).hexdigest()})
            for path, content in allowed.items()
        }
    )
    return AttestationPolicy(
        name="p",
        version=1,
        boot=BootPolicy(golden={PcrBank.SHA256: {0: GOLDEN_PCR0}}),
        runtime=runtime,
        ima_banks=(PcrBank.SHA256,),
    )


ALLOWED = {"/usr/bin/bash": b"bash", "/usr/bin/sshd": b"sshd"}


def _check(
    evidence: RoundEvidence,
    node: SoftwareNode,
    policy: AttestationPolicy,
    memory: RoundMemory | None = None,
) -> RoundResult:
    return verify_round(
        evidence, ak=node.ak.public, policy=policy, previous=memory or RoundMemory(), now=NOW
    )


def _round(node: SoftwareNode, policy: AttestationPolicy, memory: RoundMemory) -> RoundResult:
    nonce = os.urandom(32)
    return verify_round(
        node.answer(nonce, memory.ima_offset_for(policy.ima_banks)),
        ak=node.ak.public,
        policy=policy,
        previous=memory,
        now=NOW,
    )


@pytest.fixture
def node() -> SoftwareNode:
    node = SoftwareNode()
    node.measure("/usr/bin/bash", b"bash")
    return node


def test_healthy_node_passes_round_after_round_incrementally(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    first = _round(node, policy, RoundMemory())
    assert first.outcome is Outcome.PASSED, first.message
    assert first.new_ima_entries == 1
    node.measure("/usr/bin/sshd", b"sshd")
    second = _round(node, policy, first.memory)
    assert second.outcome is Outcome.PASSED, second.message
    assert second.new_ima_entries == 1
    assert second.memory.ima_offset() == 2
    quiet = _round(node, policy, second.memory)
    assert quiet.outcome is Outcome.PASSED
    assert quiet.new_ima_entries == 0


def test_file_not_in_policy_fails_naming_the_entry(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    memory = _round(node, policy, RoundMemory()).memory
    node.measure("/tmp/evil", b"payload")
    result = _round(node, policy, memory)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "ima_entry_not_allowed"
    assert "/tmp/evil" in result.message
    assert result.memory == memory


def test_pcr10_extended_without_log_entry_fails(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    memory = _round(node, policy, RoundMemory()).memory
    node.extend(hashlib.sha256(b"hidden").digest())
    result = _round(node, policy, memory)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason is not None
    assert result.reason == "ima_pcr_mismatch"


def test_replayed_quote_fails_on_the_nonce(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    old = node.answer(os.urandom(32), 0)
    fresh_nonce = os.urandom(32)
    replayed = replace(old, nonce=fresh_nonce)
    result = _check(replayed, node, policy)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "nonce_mismatch"


def test_quote_by_another_ak_fails(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    impostor = SoftwareNode(log=list(node.log), pcr10=node.pcr10)
    result = _check(impostor.answer(os.urandom(32), 0), node, policy)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "quote_signature_invalid"


def test_pcr_values_that_do_not_match_the_quote_fail(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    evidence = node.answer(os.urandom(32), 0)
    lying = replace(
        evidence, pcrs={**evidence.pcrs, PcrBank.SHA256: {0: GOLDEN_PCR0, 10: bytes(32)}}
    )
    result = _check(lying, node, policy)
    assert result.reason == "pcr_digest_mismatch"


def test_boot_pcr_change_fails(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    node.pcr0 = hashlib.sha256(b"firmware v2 (unapproved)").digest()
    result = _round(node, policy, RoundMemory())
    assert result.reason == "boot_pcr_mismatch"
    assert "PCR 0" in result.message


def test_clock_going_backwards_fails(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    memory = _round(node, policy, RoundMemory()).memory
    assert memory.clock is not None
    node.ak.clock = replace(memory.clock, clock=memory.clock.clock - 2500)  # +2000 per answer
    result = _round(node, policy, memory)
    assert result.reason == "clock_not_monotonic"


def test_rewound_offset_fails(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    memory = _round(node, policy, RoundMemory()).memory
    evidence = node.answer(os.urandom(32), 0)  # the agent restarts the log from entry 0
    result = _check(evidence, node, policy, memory)
    assert result.reason == "ima_log_rewound"


def test_reboot_is_handled_without_a_false_failure(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    node.measure("/usr/bin/sshd", b"sshd")
    memory = _round(node, policy, RoundMemory()).memory
    assert memory.ima_offset() == 2
    node.reboot()
    node.measure("/usr/bin/bash", b"bash")
    rebooted = _round(node, policy, memory)  # asked from entry 2 of the old boot
    assert rebooted.outcome is Outcome.REBOOTED
    assert rebooted.memory.ima_offset() == 0
    after = _round(node, policy, rebooted.memory)
    assert after.outcome is Outcome.PASSED, after.message
    assert after.memory.ima_offset() == 1


def test_policy_without_ima_checks_only_quote_and_boot(node: SoftwareNode) -> None:
    policy = replace(_policy(node, ALLOWED), runtime=None)
    node.measure("/tmp/anything", b"x")
    result = _round(node, policy, RoundMemory())
    assert result.outcome is Outcome.PASSED
    assert policy.pcr_selection() == {"sha256": [0]}


def test_quote_without_the_pcrs_the_policy_needs_fails(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    nonce = os.urandom(32)
    values = {Alg.SHA256: {10: node.pcr10}}  # PCR 0 left out of the quote and the values
    attest, signature = node.ak.quote(quote_qualifying_data(nonce, None), values)
    evidence = RoundEvidence(
        nonce=nonce,
        attest=attest,
        signature=signature,
        pcrs={PcrBank.SHA256: {10: node.pcr10}},
        ima_offset=0,
        ima_lines=node.log,
    )
    result = _check(evidence, node, policy)
    assert result.reason == "pcr_selection_mismatch"


def test_malformed_line_after_the_quoted_prefix_fails(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    evidence = node.answer(os.urandom(32), 0)
    broken = replace(evidence, ima_lines=[*evidence.ima_lines, "10 zz ima-ng garbage"])
    result = _check(broken, node, policy)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "ima_log_invalid"


def test_changing_the_policys_ima_banks_replays_from_entry_zero(node: SoftwareNode) -> None:
    sha256_policy = _policy(node, ALLOWED)
    memory = _round(node, sha256_policy, RoundMemory()).memory
    assert memory.ima_offset() == 1
    both_banks = replace(sha256_policy, ima_banks=(PcrBank.SHA1, PcrBank.SHA256))
    assert memory.ima_offset_for(both_banks.ima_banks) == 0
    node.measure("/usr/bin/sshd", b"sshd")
    # The memory tracks sha256 only: the log is replayed again, from entry 0, in both banks.
    result = _round(node, both_banks, memory)
    assert result.outcome is Outcome.PASSED, result.message
    assert result.new_ima_entries == 2
    assert result.memory.ima is not None
    assert set(result.memory.ima.pcr10) == {"sha1", "sha256"}


def test_round_that_reveals_a_reboot_still_checks_the_boot(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    memory = _round(node, policy, RoundMemory()).memory
    node.reboot()
    node.pcr0 = hashlib.sha256(b"unapproved firmware").digest()
    result = _round(node, policy, memory)
    assert result.outcome is Outcome.INTEGRITY_FAILURE
    assert result.reason == "boot_pcr_mismatch"


def test_every_check_gets_a_verdict_not_only_the_first_failure(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    memory = _round(node, policy, RoundMemory()).memory
    node.pcr0 = hashlib.sha256(b"unapproved firmware").digest()  # boot PCR wrong …
    node.measure("/tmp/evil", b"payload")  # … and an IMA entry the policy does not allow
    result = _round(node, policy, memory)
    verdicts = {c.check: c.verdict for c in result.checks}
    assert verdicts[Check.QUOTE] is Verdict.PASSED
    assert verdicts[Check.BOOT_PCRS] is Verdict.FAILED
    assert verdicts[Check.IMA] is Verdict.FAILED
    assert verdicts[Check.LOCATION] is Verdict.SKIPPED
    assert result.reason == "boot_pcr_mismatch"  # the first failure in check order names it
    ima = result.check(Check.IMA)
    assert ima is not None
    assert ima.reason == "ima_entry_not_allowed"


def test_nothing_is_judged_on_a_quote_that_does_not_verify(node: SoftwareNode) -> None:
    policy = _policy(node, ALLOWED)
    impostor = SoftwareNode(log=list(node.log), pcr10=node.pcr10)
    result = _check(impostor.answer(os.urandom(32), 0), node, policy)
    assert [c.verdict for c in result.checks[1:]] == [Verdict.NOT_RUN] * (len(Check) - 1)
