"""``AgentSimulator``: a whole agent in software, honest by default, adversarial on request.

Like python-tuf's ``RepositorySimulator``, it produces genuine-format evidence (TPMS_ATTEST,
TPMT_SIGNATURE, PCR banks, ima-ng lines) from software keys, and a test tampers with any part:

    sim = AgentSimulator("node-1", ca)
    sim.measure("/usr/bin/evil", digest=sha256)      # a measured file (log line + PCR 10)
    sim.pcrs[PcrBank.SHA256][10] = bytes(32)          # PCR 10 no longer matches the log
    sim.extend_without_log()                          # PCR 10 extended, no log line
    sim.replay_next = old_response                    # next answer is an old one (one shot)
    sim.sign_with = other_key                         # quotes signed by another key
    sim.reboot()                                      # TPM Reset: counters, PCRs, new log
    sim.truncate_log(3); sim.rewrite_line(2, ...)     # log rewound / rewritten
    sim.malformed = Malformed.TRUNCATED_QUOTE         # answers broken on the wire (until None)
    sim.location = LocationProvider(None, None, source_kind=SourceKind.SERIAL)  # signed by sim.tpm
    sim.location_key()                                # ... with this key (certified by the AK)

The evidence itself comes from ``agent.evidence.collect_evidence`` over a ``SoftwareTpm`` and an
in-memory measurement list: the agent's own code path, with the TPM in software. ``answer``
is the HTTP view (JSON bytes in, status and JSON bytes out) that ``tests.support.fleet_server``
serves.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

import tpm
from agent.evidence import LocationProvider, collect_evidence
from agent.ima_source import ImaLines
from agent.location import ensure_location_key
from agent.tpm_device import DEFAULT_AK_HANDLE
from geoattest.dev.ima_emulator import (
    BOOT_AGGREGATE_PCRS,
    IMA_PCR,
    ImaEntry,
    boot_aggregate_digest,
    ima_ng_entry,
)
from geoattest.errors import GeoattestError, MalformedRequest
from geoattest.pcr_banks import PcrBank
from geoattest.wire import EvidenceRequest, EvidenceResponse, LocationKeyWire
from tests.support.software_pki import SoftwareCa
from tests.support.software_tpm import SoftwareTpm

__all__ = [
    "AgentSimulator",
    "Malformed",
    "MemoryMeasurementList",
    "golden_boot_events",
    "make_simulators",
    "policy_document",
]

DEFAULT_PLATFORM = "geoattest-sim/v1"


class Malformed(enum.StrEnum):
    """Ways to break an answer on the wire (``sim.malformed``); each must be an integrity
    failure at the verifier with a clear reason, never a crash."""

    BAD_JSON = "bad json"  # not JSON at all
    NOT_AN_OBJECT = "not an object"  # JSON, but a list
    MISSING_FIELD = "missing field"  # no "quote"
    BAD_BASE64 = "bad base64"  # quote.attest is not base64
    TRUNCATED_QUOTE = "truncated quote"  # TPMS_ATTEST cut in half
    GARBAGE_SIGNATURE = "garbage signature"  # TPMT_SIGNATURE replaced by random bytes
    BAD_PCR_VALUE = "bad pcr value"  # a PCR value that is not hex
    BAD_IMA_LINE = "bad ima line"  # an extra IMA line that does not parse
    EMPTY = "empty"  # 200 with an empty body


@dataclass(slots=True)
class MemoryMeasurementList:
    """An IMA measurement list in memory (``agent.ima_source.MeasurementList``): one text line
    per entry, bytes that are not UTF-8 as surrogate escapes (``EncodedEntry.line``)."""

    lines: list[str] = field(default_factory=list)

    def read_from(self, offset: int) -> ImaLines:
        if offset > len(self.lines):
            offset = 0
        entries = [line.encode("utf-8", "surrogateescape") for line in self.lines[offset:]]
        return ImaLines(offset=offset, lines=entries)


def golden_boot_events(platform: str = DEFAULT_PLATFORM) -> dict[int, list[bytes]]:
    """The measured-boot events (sha256 digests) of a simulated platform, per PCR 0-9.

    Every simulator of one platform boots to the same PCR values, so one golden policy covers
    a whole simulated fleet.
    """
    return {
        index: [hashlib.sha256(f"{platform}/pcr{index}/event{n}".encode()).digest() for n in (0, 1)]
        for index in BOOT_AGGREGATE_PCRS
    }


class AgentSimulator:
    """One simulated agent (software TPM with an EK certificate from ``ca``, IMA log in memory)."""

    def __init__(self, agent_id: str, ca: SoftwareCa, *, platform: str = DEFAULT_PLATFORM) -> None:
        self.agent_id = agent_id
        self.platform = platform
        self.tpm = SoftwareTpm(ca)
        self.ima = MemoryMeasurementList()
        self.entries: list[ImaEntry] = []
        self.replay_next: EvidenceResponse | None = None
        self.malformed: Malformed | None = None
        self.location: LocationProvider | None = None
        self.last_response: EvidenceResponse | None = None
        self.served = 0
        self._boot()

    # --- what a verifier or registrar learns about it ----------------------------------------

    @property
    def ak_public(self) -> bytes:
        """Marshalled TPM2B_PUBLIC of the AK (as registered at enrolment)."""
        return tpm.encode_tpm2b_public(self.tpm.ak)

    @property
    def pcrs(self) -> dict[PcrBank, list[bytes]]:
        """PCR values by bank then index; assign to tamper
        (``sim.pcrs[PcrBank.SHA256][10] = …``)."""
        return self.tpm.pcrs

    @property
    def sign_with(self) -> ec.EllipticCurvePrivateKey | None:
        return self.tpm.sign_with

    @sign_with.setter
    def sign_with(self, key: ec.EllipticCurvePrivateKey | None) -> None:
        self.tpm.sign_with = key

    def location_key(self) -> LocationKeyWire:
        """The location key (created on first use) and its certification by the AK, as the
        agent sends it at enrolment; ``location`` providers sign with it through ``sim.tpm``."""
        return ensure_location_key(self.tpm, agent_id=self.agent_id)

    # --- the node's life ---------------------------------------------------------------------

    def measure(
        self, path: str, digest: bytes | None = None, *, content: bytes | None = None
    ) -> ImaEntry:
        """Measure a file (its sha256 ``digest``, or ``content``): log line + PCR 10 extend."""
        if (content is None) == (digest is None):
            raise ValueError("give exactly one of digest or content")
        file_digest = digest if digest is not None else hashlib.sha256(content or b"").digest()
        return self._record(ima_ng_entry(path, file_digest))

    def reboot(self) -> None:
        """TPM Reset and a fresh boot: PCRs re-measured, new IMA log from boot_aggregate."""
        self.tpm.reboot()
        self._boot()

    # --- attacks -----------------------------------------------------------------------------

    def extend_without_log(self, template_data: bytes | None = None) -> None:
        """Extend PCR 10 in both banks with a template no log line accounts for."""
        data = template_data or os.urandom(32)
        self.tpm.pcr_extend(
            IMA_PCR,
            {
                PcrBank.SHA1: hashlib.sha1(data).digest(),  # noqa: S324 - the sha1 PCR bank
                PcrBank.SHA256: hashlib.sha256(data).digest(),
            },
        )

    def truncate_log(self, n: int) -> None:
        """Keep only the first ``n`` log lines (PCR 10 still reflects them all)."""
        del self.ima.lines[n:]

    def rewrite_line(self, n: int, *, path: str | None = None, digest: bytes | None = None) -> str:
        """Replace log line ``n`` by a self-consistent line for another path/digest."""
        old_path = self.ima.lines[n].split(" ", 4)[4]
        new = ima_ng_entry(path or old_path, digest or hashlib.sha256(b"benign").digest())
        self.ima.lines[n] = new.line
        return new.line

    # --- answering the verifier --------------------------------------------------------------

    def respond(self, request: EvidenceRequest) -> EvidenceResponse:
        """Evidence for ``request`` (or the response staged in ``replay_next``, once)."""
        self.served += 1
        if self.replay_next is not None:
            staged, self.replay_next = self.replay_next, None
            return staged
        response = collect_evidence(
            self.tpm, self.ima, request, ak_handle=DEFAULT_AK_HANDLE, location=self.location
        )
        self.last_response = response
        return response

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """The HTTP view of ``POST /v1/evidence``: (status, JSON body), with ``malformed``
        applied. A bad request is a 400 ``malformed_request`` like the real agent's."""
        try:
            request = EvidenceRequest.model_validate_json(body)
        except ValidationError as e:
            return _error(MalformedRequest(f"bad evidence request: {e.error_count()} problem(s)"))
        try:
            response = self.respond(request)
        except GeoattestError as e:
            return _error(e)
        if self.malformed is None:
            return 200, response.model_dump_json(exclude_defaults=True).encode()
        return 200, _break(response, self.malformed)

    # --- internals ---------------------------------------------------------------------------

    def _boot(self) -> None:
        for index, events in golden_boot_events(self.platform).items():
            for event in events:
                sha1 = hashlib.sha1(event).digest()  # noqa: S324 - the sha1 PCR bank
                self.tpm.pcr_extend(index, {PcrBank.SHA1: sha1, PcrBank.SHA256: event})
        self.ima.lines.clear()
        self.entries.clear()
        sha256 = self.tpm.pcr_read({PcrBank.SHA256: list(BOOT_AGGREGATE_PCRS)})[PcrBank.SHA256]
        self._record(ima_ng_entry("boot_aggregate", boot_aggregate_digest(sha256)))

    def _record(self, entry: ImaEntry) -> ImaEntry:
        self.ima.lines.append(entry.line)
        self.entries.append(entry)
        self.tpm.pcr_extend(IMA_PCR, entry.pcr_digests)
        return entry


def _error(error: GeoattestError) -> tuple[int, bytes]:
    return error.http_status, json.dumps(error.to_dict()).encode()


def _break(response: EvidenceResponse, how: Malformed) -> bytes:
    """``response`` as JSON, damaged ``how``."""
    doc = response.model_dump(mode="json", exclude_none=True)
    if how is Malformed.BAD_JSON:
        return b'{"quote": {"attest": '
    if how is Malformed.EMPTY:
        return b""
    if how is Malformed.NOT_AN_OBJECT:
        return json.dumps([doc]).encode()
    if how is Malformed.MISSING_FIELD:
        del doc["quote"]
    elif how is Malformed.BAD_BASE64:
        doc["quote"]["attest"] = "not*base64!"
    elif how is Malformed.TRUNCATED_QUOTE:
        attest = response.quote.attest
        doc["quote"]["attest"] = _b64(attest[: len(attest) // 2])
    elif how is Malformed.GARBAGE_SIGNATURE:
        doc["quote"]["signature"] = _b64(os.urandom(len(response.quote.signature)))
    elif how is Malformed.BAD_PCR_VALUE:
        bank = next(iter(doc["pcrs"]))
        index = next(iter(doc["pcrs"][bank]))
        doc["pcrs"][bank][index] = "zz" * 32
    elif how is Malformed.BAD_IMA_LINE:
        doc["ima"]["lines"].append("10 not-a-hash ima-ng")
    return json.dumps(doc).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def policy_document(
    sim: AgentSimulator, allowed: dict[str, bytes] | None = None
) -> dict[str, object]:
    """A verifier policy every honest simulator of ``sim``'s platform passes: its golden boot
    PCRs, and its IMA log plus the files of ``allowed`` (path -> content) as the runtime policy."""
    boot = {str(i): sim.pcrs[PcrBank.SHA256][i].hex() for i in range(8)}
    digests: dict[str, list[str]] = {}
    for line in sim.ima.lines:
        _, _, _, digest, path = line.split(" ", 4)
        digests.setdefault(path, []).append(digest)
    for path, content in (allowed or {}).items():
        digests.setdefault(path, []).append("sha256:" + hashlib.sha256(content).hexdigest())
    return {
        "boot_pcrs": {"sha256": boot},
        "ima_banks": ["sha256"],
        "runtime_policy": {"version": 1, "digests": digests, "excludes": ["/var/log/*"]},
    }


def make_simulators(count: int, ca: SoftwareCa, *, prefix: str = "sim") -> Sequence[AgentSimulator]:
    """``count`` simulators named ``<prefix>-00000``…"""
    return [AgentSimulator(f"{prefix}-{i:05d}", ca) for i in range(count)]
