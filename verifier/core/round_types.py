"""The typed values of a round: what the verifier remembers between rounds, what an agent sent,
and what the round concluded (an outcome, and a verdict per check)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from allowlists.ima.replay import ImaState
from geoattest.pcr_banks import PcrBank
from geofence.nearby import DecidedAt
from tpm import ClockInfo
from verifier.core.location import LocationVerdict
from verifier.core.reasons import Reason
from verifier.core.states import Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundMemory:
    """What the verifier remembers about an agent between rounds."""

    clock: ClockInfo | None = None
    ima: ImaState | None = None  # None: nothing verified since the last (re)boot
    # Signed location evidence of the last passed rounds, oldest first (for track checks such as
    # teleport and frozen fixes); survives reboots, as the node's position does.
    location_track: tuple[bytes, ...] = ()

    def ima_offset(self) -> int:
        return self.ima.entries_verified if self.ima is not None else 0

    def ima_for(self, banks: Sequence[PcrBank]) -> ImaState | None:
        """The IMA memory, if it tracks exactly ``banks``: after a policy changes its banks the
        log is replayed again from entry 0 rather than compared across banks."""
        if self.ima is None or set(self.ima.pcr10) != set(banks):
            return None
        return self.ima

    def ima_offset_for(self, banks: Sequence[PcrBank]) -> int:
        ima = self.ima_for(banks)
        return ima.entries_verified if ima is not None else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundEvidence:
    """One answer of an agent, typed (see ``verifier.core.evidence.parse_evidence``)."""

    nonce: bytes
    attest: bytes
    signature: bytes
    pcrs: Mapping[PcrBank, Mapping[int, bytes]]  # bank → PCR index → value
    ima_offset: int
    # One string per entry: the kernel's bytes decoded with surrogateescape (lossless; the
    # template data is rebuilt from ``line.encode("utf-8", "surrogateescape")``).
    ima_lines: Sequence[str]
    location: bytes | None = None
    location_signature: bytes | None = None
    boot_log: bytes | None = None  # TCG event log (binary_bios_measurements), when asked for


class Check(StrEnum):
    """The checks of a round, in the order they run (the first failure names the round)."""

    QUOTE = "quote"  # AK signature, extraData = nonce (+ location digest), PCR digest
    PCR_SELECTION = "pcr_selection"
    CLOCK = "clock"  # TPM clock, resetCount, restartCount only move forward
    BOOT_PCRS = "boot_pcrs"
    BOOT_LOG = "boot_log"
    IMA = "ima"
    LOCATION = "location"


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # the policy does not ask for this check
    NOT_RUN = "not_run"  # a check it depends on failed (nothing unauthenticated is judged)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    check: Check
    verdict: Verdict
    reason: Reason | None = None
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """An event a passed round asks for without a state change (``gnss_receiver_changed``)."""

    reason: Reason
    message: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundResult:
    outcome: Outcome
    memory: RoundMemory  # what to remember for the next round
    reason: Reason | None = None  # why the outcome is not ``passed`` (the first failed check)
    message: str = ""
    new_ima_entries: int = 0
    details: Mapping[str, str] = field(default_factory=dict)
    # The zone decision of the round's authenticated fix, when the policy checks location: the
    # ``inside`` one of a passed round, or what a failed location check decided (outside,
    # uncertain, or the decision of a fix that failed plausibility).
    location: LocationVerdict | None = None
    checks: tuple[CheckResult, ...] = ()  # a verdict per check, not only the first failure
    notice: Notice | None = None  # an event to raise although the round passed
    # Full zone decisions for the next round's fix (``geofence.nearby``): a cache the engine
    # keeps per process, never recorded (a re-verification decides in full, the same way).
    zone_hints: Mapping[str, DecidedAt] = field(default_factory=dict)

    def check(self, check: Check) -> CheckResult | None:
        return next((c for c in self.checks if c.check is check), None)
