"""Re-verify a stored evidence record offline: the live round's checks, from the record alone.

``reverify_record`` rebuilds the round's evidence and the memory it was judged against from the
record, runs ``verify_round`` again with the AK, location key and policy the record names (at the
record's own ``judged_at``), and compares every verdict with the recorded one. What the record
alone cannot settle is listed, never silently passed:

- the location *track* checks (teleport, frozen fix, clock jump, vertical speed) need the previous
  rounds' location evidence; pass it as ``track`` (checked against the record's track digest);
- boot event log replay needs the boot log, of which the record keeps only the SHA-256.

Pure: no I/O. The residency-proof export and ``verify-bundle`` build on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tpm import TpmPublic
from verifier.core.policy import AttestationPolicy
from verifier.core.reasons import Reason
from verifier.core.record import track_digest
from verifier.core.record_types import EvidenceRecord, RecordKind
from verifier.core.round import verify_round
from verifier.core.round_types import Check, RoundMemory, RoundResult, Verdict

# Plausibility reasons that depend on the previous fixes (geofence.plausibility).
TRACK_REASONS = frozenset(
    {"location_teleport", "location_frozen", "location_clock_jump", "location_altitude"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reverification:
    seq: int
    round_id: str
    consistent: bool  # every verdict that could be re-checked equals the recorded one
    mismatches: tuple[str, ...] = ()
    not_checked: tuple[str, ...] = ()


def reverify_record(
    record: EvidenceRecord,
    *,
    ak: TpmPublic,
    policy: AttestationPolicy,
    location_key: TpmPublic | None = None,
    track: Sequence[bytes] | None = None,
    boot_log: bytes | None = None,
) -> Reverification:
    """Re-run the record's round and compare (see the module docstring).

    ``ak``/``location_key``/``policy`` must be the ones the record names: a different AK name or
    policy digest is a mismatch, not a re-verification against something else.
    """
    rev = _Comparison(record)
    if record.kind is not RecordKind.ROUND or record.evidence is None or record.context is None:
        rev.skip("no evidence in this record (operator action, watchdog, or no answer)")
        return rev.result()
    if record.judged_at is None or record.policy is None:
        rev.mismatch("round record without judged_at or policy reference")
        return rev.result()
    _check_references(record, rev, ak=ak, policy=policy, location_key=location_key)
    if rev.mismatches:
        return rev.result()
    context = record.context
    usable_track: tuple[bytes, ...] = ()
    if track is not None and len(track) == context.track_length:
        if track_digest(track) == context.track_sha256:
            usable_track = tuple(track)
        else:
            rev.mismatch("the location track given does not match the record's track digest")
            return rev.result()
    track_missing = context.track_length > 0 and not usable_track
    evidence = record.evidence
    log_missing = policy.boot_log_replay and not _log_matches(boot_log, record.boot_log_sha256)
    if not log_missing and policy.boot_log_replay:
        evidence = replace(evidence, boot_log=boot_log)
    again = verify_round(
        evidence,
        ak=ak,
        policy=policy,
        previous=RoundMemory(clock=context.clock, ima=context.ima, location_track=usable_track),
        now=record.judged_at,
        location_key=location_key,
        receiver=context.receiver,
    )
    exempt = set()
    if track_missing:
        exempt.add(Check.LOCATION)
        rev.skip(f"location track checks: the {context.track_length} previous fixes are not given")
    if log_missing:
        exempt.add(Check.BOOT_LOG)
        rev.skip("boot event log replay: the record keeps only the log's SHA-256")
    _compare(record, again, exempt, rev)
    return rev.result()


class _Comparison:
    def __init__(self, record: EvidenceRecord) -> None:
        self.record = record
        self.mismatches: list[str] = []
        self.not_checked: list[str] = []

    def mismatch(self, what: str) -> None:
        self.mismatches.append(what)

    def skip(self, what: str) -> None:
        self.not_checked.append(what)

    def result(self) -> Reverification:
        return Reverification(
            seq=self.record.seq,
            round_id=self.record.round_id,
            consistent=not self.mismatches,
            mismatches=tuple(self.mismatches),
            not_checked=tuple(self.not_checked),
        )


def _check_references(
    record: EvidenceRecord,
    rev: _Comparison,
    *,
    ak: TpmPublic,
    policy: AttestationPolicy,
    location_key: TpmPublic | None,
) -> None:
    ref = record.policy
    assert ref is not None  # noqa: S101  # checked by the caller
    if record.ak_name is not None and record.ak_name != ak.name:
        rev.mismatch(f"record names AK {record.ak_name.hex()}, not {ak.name.hex()}")
    if (ref.name, ref.version, ref.sha256) != (policy.name, policy.version, policy.digest):
        rev.mismatch(
            f"record was judged by policy {ref.name} v{ref.version} ({ref.sha256.hex()[:16]}…), "
            f"not {policy.name} v{policy.version} ({policy.digest.hex()[:16]}…)"
        )
    wanted = record.location_key_name
    if wanted is not None and (location_key is None or location_key.name != wanted):
        rev.mismatch(f"record names location key {wanted.hex()}, which was not given")


def _log_matches(boot_log: bytes | None, digest: bytes | None) -> bool:
    return boot_log is not None and digest == hashlib.sha256(boot_log).digest()


def _compare(
    record: EvidenceRecord, again: RoundResult, exempt: set[Check], rev: _Comparison
) -> None:
    differing = set()
    for recorded in record.checks:
        now = again.check(recorded.check)
        now_verdict = now.verdict if now is not None else Verdict.NOT_RUN
        if now_verdict is not recorded.verdict or (
            recorded.verdict is Verdict.FAILED and now is not None and now.reason != recorded.reason
        ):
            differing.add(recorded.check)
            if recorded.check not in exempt:
                rev.mismatch(
                    f"check {recorded.check}: recorded {recorded.verdict}"
                    f"{f' ({recorded.reason})' if recorded.reason else ''}, re-verified "
                    f"{now_verdict}{f' ({now.reason})' if now is not None and now.reason else ''}"
                )
    location_detail = record.details.get("reason", "")
    if (
        Check.LOCATION in exempt
        and record.reason is Reason.LOCATION_IMPLAUSIBLE
        and location_detail not in TRACK_REASONS
        and Check.LOCATION in differing
    ):
        rev.mismatch(f"location check failed on {location_detail}, which needs no track")
    if again.outcome is not record.outcome and not differing <= exempt:
        rev.mismatch(f"outcome: recorded {record.outcome}, re-verified {again.outcome}")
