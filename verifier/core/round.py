"""One attestation round, decided by a pure function: evidence + policy + memory → result.

``verify_round`` does no I/O and reads no clock. It runs the design's checks in order:
1. the quote's signature verifies with the agent's registered AK, its extraData is the fresh nonce
   (bound with the location evidence), its PCR digest matches the PCR values sent, and the PCRs
   quoted are the ones asked for;
2. the TPM clock, resetCount and restartCount only move forward; a reboot restarts IMA replay;
3. boot PCRs equal the golden values and, when the policy asks, replaying the boot event log
   reproduces the quoted PCRs 0-7;
4. the IMA log from the last verified entry reproduces PCR 10 and every entry is allowed;
5. the location evidence (``verifier.core.location``), the GNSS receiver it names compared with
   the enrolled one (``verifier.core.receiver``) included.
Any ``IntegrityError`` becomes an ``integrity_failure`` result carrying its code and message.
A passed round may carry a ``notice``: something to tell the world about although nothing
failed (a changed GNSS receiver the policy only records); the runner commits it as one event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from allowlists.boot import check_boot_pcrs
from allowlists.ima.policy import RuntimePolicy
from allowlists.ima.replay import ImaState, replay_and_check
from allowlists.ima.template import parse_entry
from geoattest.errors import (
    BootLogInvalid,
    BootLogMismatch,
    BootLogMissing,
    ImaLogRewound,
    IntegrityError,
    LocationMissing,
    PcrSelectionMismatch,
)
from geoattest.pcr_banks import PcrBank
from geoattest.wire import quote_qualifying_data
from geofence import GnssReceiver, decode_evidence
from geofence.nearby import DecidedAt
from tpm import (
    ClockProgress,
    QuoteResult,
    TpmPublic,
    bank_alg,
    check_clock_progress,
    parse_event_log,
    replay_event_log,
    verify_quote,
)
from verifier.core.location import LocationVerdict, fix_from_evidence, judge_location
from verifier.core.policy import BOOT_LOG_PCRS, IMA_PCR, AttestationPolicy
from verifier.core.reasons import Reason, reason_of_code
from verifier.core.round_types import (
    Check,
    CheckResult,
    Notice,
    RoundEvidence,
    RoundMemory,
    RoundResult,
    Verdict,
)
from verifier.core.states import Outcome

LOCATION_TRACK_LENGTH = 16


def verify_round(
    evidence: RoundEvidence,
    *,
    ak: TpmPublic,
    policy: AttestationPolicy,
    previous: RoundMemory,
    now: dt.datetime,
    location_key: TpmPublic | None = None,
    receiver: GnssReceiver | None = None,
    zone_hints: Mapping[str, DecidedAt] | None = None,
) -> RoundResult:
    """Decide one round. Never raises for bad evidence: the result says what failed and why.

    Once the quote verifies, every other check runs on its own, so the result carries a verdict
    per check; the round's reason is the first failed check in ``Check`` order.
    ``location_key`` is the agent's registered TPM-resident location key (needed when the policy
    checks location); ``now`` is the verifier's aware UTC time (location freshness);
    ``receiver`` the GNSS receiver the agent enrolled (None: none enrolled); ``zone_hints`` the
    previous round's ``RoundResult.zone_hints`` (a cache: they change no decision).
    """
    return _Round(evidence, ak, policy, previous, now, location_key, receiver, zone_hints).run()


_DETAIL_KEYS = ("path", "digest", "line", "bank", "pcr", "expected", "actual", "reason")


class _Round:
    """One evaluation: runs the checks, collecting a verdict and the first failure."""

    def __init__(
        self,
        evidence: RoundEvidence,
        ak: TpmPublic,
        policy: AttestationPolicy,
        previous: RoundMemory,
        now: dt.datetime,
        location_key: TpmPublic | None,
        receiver: GnssReceiver | None = None,
        zone_hints: Mapping[str, DecidedAt] | None = None,
    ) -> None:
        self.evidence, self.ak, self.policy = evidence, ak, policy
        self.previous, self.now, self.location_key = previous, now, location_key
        self.receiver = receiver
        self.zone_hints: Mapping[str, DecidedAt] = zone_hints or {}
        self.checks: list[CheckResult] = []
        self.failure: IntegrityError | None = None
        self.notice: Notice | None = None
        self.location: LocationVerdict | None = None  # the authenticated fix's zone decision

    def _run(self, check: Check, body: Callable[[], None]) -> bool:
        try:
            body()
        except IntegrityError as e:
            self.checks.append(
                CheckResult(
                    check=check,
                    verdict=Verdict.FAILED,
                    reason=reason_of_code(e.code),
                    message=e.message,
                )
            )
            self.failure = self.failure or e
            return False
        self.checks.append(CheckResult(check=check, verdict=Verdict.PASSED))
        return True

    def _mark(self, verdict: Verdict, *checks: Check) -> None:
        self.checks.extend(CheckResult(check=c, verdict=verdict) for c in checks)

    def run(self) -> RoundResult:
        evidence, policy = self.evidence, self.policy
        quote: list[QuoteResult] = []

        def check_quote() -> None:
            quote.append(
                verify_quote(
                    ak=self.ak,
                    attest=evidence.attest,
                    signature=evidence.signature,
                    nonce=quote_qualifying_data(evidence.nonce, evidence.location),
                    pcr_values={bank_alg(bank): v for bank, v in evidence.pcrs.items()},
                )
            )

        if not self._run(Check.QUOTE, check_quote):
            # Nothing else is judged on evidence the TPM did not vouch for.
            self._mark(Verdict.NOT_RUN, *list(Check)[1:])
            return self._failed()
        clock_info = quote[0].clock_info
        self._run(
            Check.PCR_SELECTION, lambda: _check_selection(evidence.pcrs, policy.pcr_selection())
        )
        progress: list[ClockProgress] = []
        self._run(
            Check.CLOCK,
            lambda: progress.append(check_clock_progress(self.previous.clock, clock_info)),
        )
        # The boot itself is judged in every round, the round that reveals a reboot included.
        self._run(Check.BOOT_PCRS, lambda: check_boot_pcrs(evidence.pcrs, policy.boot))
        if policy.boot_log_replay:
            self._run(Check.BOOT_LOG, lambda: _check_boot_log(evidence, policy.pcr_selection()))
        else:
            self._mark(Verdict.SKIPPED, Check.BOOT_LOG)
        rebooted = bool(progress) and progress[0] is ClockProgress.REBOOT
        if rebooted and evidence.ima_offset != 0 and self.failure is None:
            # The log we were sent continues the previous boot's offset: it means nothing now.
            self._mark(Verdict.NOT_RUN, Check.IMA, Check.LOCATION)
            return RoundResult(
                outcome=Outcome.REBOOTED,
                memory=RoundMemory(
                    clock=clock_info, ima=None, location_track=self.previous.location_track
                ),
                reason=Reason.REBOOT_DETECTED,
                message="TPM resetCount moved: node rebooted; IMA replay restarts from entry 0",
                checks=tuple(self.checks),
            )
        ima = None if rebooted else self.previous.ima_for(policy.ima_banks)
        new_entries = [0]
        if policy.runtime is not None:
            runtime = policy.runtime

            def check_ima() -> None:
                nonlocal ima
                ima, new_entries[0] = _replay_ima(evidence, runtime, policy.ima_banks, ima)

            self._run(Check.IMA, check_ima)
        else:
            self._mark(Verdict.SKIPPED, Check.IMA)
        verdict: list[LocationVerdict] = []
        if policy.location is not None:
            if self._run(Check.LOCATION, lambda: verdict.append(self._check_location())):
                self._note_receiver(verdict[0])
        else:
            self._mark(Verdict.SKIPPED, Check.LOCATION)
        if self.failure is not None:
            return self._failed()
        track = self.previous.location_track
        if verdict and evidence.location is not None:
            track = (*track, evidence.location)[-LOCATION_TRACK_LENGTH:]
        return RoundResult(
            outcome=Outcome.PASSED,
            memory=RoundMemory(clock=clock_info, ima=ima, location_track=track),
            new_ima_entries=new_entries[0],
            location=verdict[0] if verdict else None,
            checks=tuple(self.checks),
            zone_hints=self.zone_hints,
            notice=self.notice,
        )

    def _note_receiver(self, verdict: LocationVerdict) -> None:
        """A receiver the policy only records: on the location check's result in every such
        round, and a notice when this round is the change."""
        finding = verdict.receiver_finding
        if finding is None:
            return
        message = finding.message()
        self.checks[-1] = replace(
            self.checks[-1], reason=Reason.GNSS_RECEIVER_CHANGED, message=message
        )
        if finding.new:
            self.notice = Notice(
                reason=Reason.GNSS_RECEIVER_CHANGED, message=message, details=finding.details()
            )

    def _check_location(self) -> LocationVerdict:
        """The ``inside`` verdict, or raises; the decision of an authenticated fix is kept in
        ``self.location`` either way (the record shows a failed or uncertain one too)."""
        policy, evidence = self.policy.location, self.evidence
        assert policy is not None  # noqa: S101  # only called when the policy checks location
        if self.location_key is None:
            raise LocationMissing("the policy requires location; the agent has no location key")
        if evidence.location is None:
            raise LocationMissing("the policy requires signed location evidence; none was sent")
        track = [decode_evidence(old) for old in self.previous.location_track]
        previous_receiver = None
        if track and track[-1].source is not None:
            previous_receiver = GnssReceiver.from_evidence(track[-1])
        judged = judge_location(
            evidence=evidence.location,
            signature=evidence.location_signature,
            location_key=self.location_key,
            nonce=evidence.nonce,
            policy=policy,
            track=[fix_from_evidence(old) for old in track],
            now=self.now,
            enrolled_receiver=self.receiver,
            previous_receiver=previous_receiver,
            near=self.zone_hints,
        )
        self.location = judged.verdict
        self.zone_hints = judged.near
        if judged.failure is not None:
            raise judged.failure
        assert judged.verdict is not None  # noqa: S101  # a passed check decided inside
        return judged.verdict

    def _failed(self) -> RoundResult:
        e = self.failure
        assert e is not None  # noqa: S101  # only called after a check failed
        details = {
            key: str(value) for key in _DETAIL_KEYS if (value := getattr(e, key, None)) is not None
        }
        return RoundResult(
            outcome=Outcome.INTEGRITY_FAILURE,
            memory=self.previous,
            reason=reason_of_code(e.code),
            message=e.message,
            details=details,
            location=self.location,
            checks=tuple(self.checks),
            zone_hints=self.zone_hints,
        )


def _replay_ima(
    evidence: RoundEvidence,
    runtime: RuntimePolicy,
    banks: Sequence[PcrBank],
    ima: ImaState | None,
) -> tuple[ImaState, int]:
    state = ima or ImaState.initial(banks)
    if evidence.ima_offset != state.entries_verified:
        raise ImaLogRewound(
            f"agent sent the IMA log from entry {evidence.ima_offset}, "
            f"but {state.entries_verified} entries are already verified"
        )
    quoted = {bank: evidence.pcrs[bank][IMA_PCR] for bank in banks}
    result = replay_and_check(
        evidence.ima_lines,
        state=state,
        quoted_pcr10=quoted,
        policy=runtime,
    )
    # Lines past the quoted PCR 10 belong to the next round, but an honest agent never sends a
    # line that is not a measurement: a malformed one fails now (ImaLogInvalid).
    first_unused = state.entries_verified + result.consumed + 1
    for number, line in enumerate(evidence.ima_lines[result.consumed :], start=first_unused):
        parse_entry(line, number)
    return result.state, result.consumed


def _check_boot_log(evidence: RoundEvidence, selection: Mapping[PcrBank, Sequence[int]]) -> None:
    """The boot event log must replay to every quoted PCR 0-7 of ``selection`` in the banks
    the log carries (PCRs no event extends keep their start value). The log names its banks as
    strings (it may carry hashes that are no ``PcrBank``); a ``PcrBank`` is such a string."""
    if evidence.boot_log is None:
        raise BootLogMissing("the policy replays the boot event log; the agent sent none")
    log = parse_event_log(evidence.boot_log)
    banks = [bank for bank in selection if bank in log.spec.digest_sizes]
    if not banks:
        raise BootLogInvalid(
            f"the boot event log carries {', '.join(log.spec.banks)} digests; the quote covers "
            f"{', '.join(selection)}: nothing to compare"
        )
    replayed = replay_event_log(log, banks)
    mismatches = []
    for bank in banks:
        size = log.spec.digest_sizes[bank]
        for index in sorted(set(selection[bank]) & set(BOOT_LOG_PCRS)):
            quoted = evidence.pcrs[bank][index]
            expected = replayed[bank].get(index, bytes(size))  # PCR 0 is always replayed
            if quoted != expected:
                mismatches.append((bank, index, expected, quoted))
    if mismatches:
        bank, index, expected, quoted = mismatches[0]
        more = "".join(f"; and {b} PCR {i}" for b, i, _, _ in mismatches[1:])
        raise BootLogMismatch(
            f"boot event log does not reproduce {bank} PCR {index}: replayed {expected.hex()}, "
            f"quoted {quoted.hex()}{more}",
            bank=bank,
            pcr=str(index),
            expected=expected.hex(),
            actual=quoted.hex(),
        )


def _check_selection(
    reported: Mapping[PcrBank, Mapping[int, bytes]], wanted: Mapping[PcrBank, Sequence[int]]
) -> None:
    for bank, indices in wanted.items():
        missing = sorted(set(indices) - set(reported.get(bank, {})))
        if missing:
            raise PcrSelectionMismatch(f"quote lacks {bank} PCRs {missing} that the policy needs")
