"""The typed attestation policy a round is checked against: golden boot PCRs, IMA policy,
boot event log replay and location."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass

from allowlists.boot import BootPolicy, parse_boot_policy
from allowlists.ima.policy import RuntimePolicy, runtime_policy_from_mapping
from geoattest.errors import PolicyInvalid
from geoattest.pcr_banks import PcrBank
from geoattest.wire import PolicyDocument
from geofence import ZoneSet
from verifier.core.canonical import canonical_json
from verifier.core.location import LocationRoundPolicy, location_policy_from_mapping

IMA_PCR = 10
BOOT_LOG_PCRS = tuple(range(8))  # the firmware's PCRs, which the boot event log accounts for
MAX_LEASE_SECONDS = 7 * 24 * 3600  # a week: the longest lease a policy may ask for


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationPolicy:
    name: str
    version: int
    boot: BootPolicy
    runtime: RuntimePolicy | None  # None: the IMA log is not checked
    ima_banks: tuple[PcrBank, ...]
    location: LocationRoundPolicy | None = None  # None: no Proof-of-Geofencing required
    # Replay the TCG boot event log; it must reproduce the quoted PCRs 0-7 (``boot_log_pcr_…``).
    boot_log_replay: bool = False
    # The lease: how long a passed round vouches for the agent (None: the verifier's default).
    max_age: dt.timedelta | None = None
    digest: bytes = b""  # SHA-256 of the canonical document (``canonical_document``)

    def pcr_selection(self) -> dict[PcrBank, list[int]]:
        """What the verifier asks the agent to quote: golden PCRs, PCR 10 for IMA replay, and
        PCRs 0-7 for boot log replay (in the golden banks, sha256 when none is pinned)."""
        selection = {bank: set(indices) for bank, indices in self.boot.selection().items()}
        if self.boot_log_replay:
            for bank in list(selection) or [PcrBank.SHA256]:
                selection.setdefault(bank, set()).update(BOOT_LOG_PCRS)
        if self.runtime is not None:
            for bank in self.ima_banks:
                selection.setdefault(bank, set()).add(IMA_PCR)
        if not selection:  # nothing pinned: still quote PCR 0 to prove liveness and identity
            selection[PcrBank.SHA256] = {0}
        return {bank: sorted(indices) for bank, indices in selection.items()}


def canonical_document(document: PolicyDocument) -> bytes:
    """The bytes a policy is stored, digested and exported as: RFC 8785 canonical JSON of the
    document with every field (``canonical_json``: the C encoder for the runtime policy's
    entries, the reference for floats). ``PolicyInvalid`` for values JSON cannot carry (NaN,
    infinity, lone surrogates)."""
    # The runtime policy is JSON already (``dict[str, object]`` from the strict reader):
    # pydantic's dump of 10^5 entries would only copy it, at seconds per whole-system policy.
    fields = document.model_dump(mode="json", exclude={"runtime_policy"})
    fields["runtime_policy"] = document.runtime_policy
    try:
        return canonical_json(fields)
    except ValueError as e:  # rfc8785.CanonicalizationError, UnicodeEncodeError
        raise PolicyInvalid(f"policy is not representable as canonical JSON: {e}") from e


def reloaded_document(document: PolicyDocument) -> PolicyDocument:
    """``document`` as a worker will read it back from its canonical bytes.

    Every field but the runtime policy makes the real trip (bytes, then the JSON validator).
    The runtime policy is plain JSON whose canonical text ``canonical_json`` makes exactly, and
    a valid one holds no float (the only values the trip could change, ``1.0`` into ``1``), so
    it reads back as the same values (tests hold both); its trip would cost seconds for a
    whole-system policy and prove nothing more. ``PolicyInvalid`` for what does not survive."""
    rest = document.model_copy(update={"runtime_policy": None})
    try:
        reloaded = PolicyDocument.model_validate_json(canonical_document(rest))
    except ValueError as e:
        raise PolicyInvalid(f"policy does not survive being stored: {e}") from e
    return reloaded.model_copy(update={"runtime_policy": document.runtime_policy})


def document_digest(canonical: bytes) -> bytes:
    return hashlib.sha256(canonical).digest()


def policy_from_document(
    name: str,
    version: int,
    document: PolicyDocument,
    zones: ZoneSet | None,
    *,
    digest: bytes = b"",
) -> AttestationPolicy:
    """Parse an operator's document; raises ``PolicyInvalid`` naming what is wrong (also when it
    asks for a location check and the verifier has no zones)."""
    if not document.ima_banks:
        raise PolicyInvalid('ima_banks: at least one PCR bank is needed (e.g. ["sha256"])')
    max_age = None
    if document.max_age_seconds is not None:
        # Bounded: a lease of centuries overflows every datetime it is added to (a 500 on
        # every read of the agent), and no one means more than this anyway.
        if not (
            math.isfinite(document.max_age_seconds)
            and 0 < document.max_age_seconds <= MAX_LEASE_SECONDS
        ):
            raise PolicyInvalid(
                f"max_age_seconds must be in (0, {MAX_LEASE_SECONDS}], "
                f"not {document.max_age_seconds}"
            )
        max_age = dt.timedelta(seconds=document.max_age_seconds)
    runtime = None
    if document.runtime_policy is not None:
        runtime = runtime_policy_from_mapping(document.runtime_policy)
    location = None
    if document.location is not None:
        if zones is None:
            raise PolicyInvalid(
                "location: this verifier has no zones (set zones_file / GEOATTEST_ZONES_FILE)"
            )
        location = location_policy_from_mapping(document.location, zones)
    return AttestationPolicy(
        name=name,
        version=version,
        boot=parse_boot_policy(document.boot_pcrs),
        runtime=runtime,
        ima_banks=tuple(dict.fromkeys(document.ima_banks)),
        location=location,
        boot_log_replay=document.boot_log,
        max_age=max_age,
        digest=digest,
    )
