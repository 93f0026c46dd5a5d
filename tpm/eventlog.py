"""TCG PC Client crypto-agile event logs (``binary_bios_measurements``): parse and replay.

The firmware records every measurement it extends into PCRs 0-7 (and the boot loader into 8, 9,
14) in this log; replaying it must reproduce the PCR values a quote reports, or the log lies.
The format is the TCG PC Client Platform Firmware Profile (PFP) §10, little-endian throughout:

- the first event is a legacy ``TCG_PCR_EVENT`` (SHA-1 sized digest, all zero) on PCR 0 of type
  ``EV_NO_ACTION`` whose data is the ``Spec ID Event03`` structure: the hash algorithms of the
  log and their digest sizes;
- every later event is a ``TCG_PCR_EVENT2``: pcrIndex, eventType, a ``TPML_DIGEST_VALUES`` with
  one digest per algorithm of the header, then the event data (u32 size + bytes).

Replay starts every PCR at zero except PCR 0, whose last byte is the locality the TPM was
started from (PFP §10.4.5.3: the ``EV_NO_ACTION`` "StartupLocality" event, 0 when absent), and
skips ``EV_NO_ACTION`` events, which are never extended.

The log comes from the node under attestation, so the parser trusts nothing: every read is
bounds-checked, the log, each event and the number of events are capped, and any malformed
input raises ``BootLogInvalid`` (a ``TpmFormatError``) naming the byte offset.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from geoattest.errors import BootLogInvalid, TpmFormatError
from tpm.constants import Alg, digest_size

__all__ = [
    "MAX_EVENTS",
    "MAX_EVENT_DATA_BYTES",
    "MAX_LOG_BYTES",
    "Event",
    "EventLog",
    "EventType",
    "SpecIdEvent",
    "encode_event_log",
    "parse_event_log",
]

MAX_LOG_BYTES: Final = 4 * 1024 * 1024
"""Largest log accepted; real firmware logs are 20-200 KiB."""
MAX_EVENTS: Final = 20_000
"""Most events accepted (real logs hold 50-1,000)."""
MAX_EVENT_DATA_BYTES: Final = 1024 * 1024
"""Largest event data (the biggest real ones are UEFI variables such as dbx, tens of KiB)."""
MAX_ALGORITHMS: Final = 16
MAX_DIGEST_BYTES: Final = 64  # TPM2 digests are at most SHA-512 sized

SPEC_ID_SIGNATURE: Final = b"Spec ID Event03\x00"
STARTUP_LOCALITY_SIGNATURE: Final = b"StartupLocality\x00"
_LEGACY_DIGEST_BYTES: Final = 20

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_EVENT_HEAD = struct.Struct("<II")  # pcrIndex, eventType (legacy TCG_PCR_EVENT)
_EVENT2_HEAD = struct.Struct("<III")  # pcrIndex, eventType, TPML_DIGEST_VALUES.count
_SPEC_ID_HEAD = struct.Struct("<IBBBBI")  # platformClass … numberOfAlgorithms


class EventType(enum.IntEnum):
    """Common TCG event types (PFP §10.4.1); ``Event.event_type`` may hold any u32."""

    EV_PREBOOT_CERT = 0x00000000
    EV_POST_CODE = 0x00000001
    EV_NO_ACTION = 0x00000003
    EV_SEPARATOR = 0x00000004
    EV_ACTION = 0x00000005
    EV_EVENT_TAG = 0x00000006
    EV_S_CRTM_CONTENTS = 0x00000007
    EV_S_CRTM_VERSION = 0x00000008
    EV_CPU_MICROCODE = 0x00000009
    EV_PLATFORM_CONFIG_FLAGS = 0x0000000A
    EV_TABLE_OF_DEVICES = 0x0000000B
    EV_COMPACT_HASH = 0x0000000C
    EV_IPL = 0x0000000D
    EV_NONHOST_CODE = 0x0000000F
    EV_NONHOST_CONFIG = 0x00000010
    EV_NONHOST_INFO = 0x00000011
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x00000012
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecIdEvent:
    """The log header (``TCG_EfiSpecIDEventStruct``): which banks every event carries."""

    platform_class: int
    spec_version: tuple[int, int, int]  # major, minor, errata
    uintn_size: int
    digest_sizes: Mapping[str, int]  # bank name ("sha256") → digest size, in header order
    vendor_info: bytes

    @property
    def banks(self) -> tuple[str, ...]:
        return tuple(self.digest_sizes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One ``TCG_PCR_EVENT2``: the digests extended into ``pcr`` (one per bank) and the data."""

    pcr: int
    event_type: int
    digests: Mapping[str, bytes]  # bank name → digest
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EventLog:
    """A parsed log: its header and the events after it (the header event is not in
    ``events``). ``startup_locality`` is the StartupLocality event's value, 0 without one."""

    spec: SpecIdEvent
    events: tuple[Event, ...]
    startup_locality: int = 0


def _bank_name(alg_id: int) -> str:
    try:
        return Alg(alg_id).name.lower()
    except ValueError:
        return f"alg_{alg_id:04x}"


class _Cursor:
    """Little-endian bounds-checked reads over the log; errors name the offset."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def need(self, n: int, what: str) -> int:
        """The current offset, after checking ``n`` bytes of ``what`` are there."""
        pos = self.pos
        if pos + n > len(self.data):
            raise BootLogInvalid(
                f"boot log truncated: {what} needs {n} bytes at offset {pos}, "
                f"only {len(self.data) - pos} left"
            )
        return pos

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[int, ...]:
        pos = self.need(fmt.size, what)
        self.pos = pos + fmt.size
        values: tuple[int, ...] = fmt.unpack_from(self.data, pos)
        return values

    def take(self, n: int, what: str) -> bytes:
        pos = self.need(n, what)
        self.pos = pos + n
        return self.data[pos : pos + n]

    def sized(self, what: str, limit: int) -> bytes:
        """A u32 size, then that many bytes (at most ``limit``)."""
        at = self.pos
        (size,) = self.unpack(_U32, f"{what} size")
        if size > limit:
            raise BootLogInvalid(
                f"boot log: {what} at offset {at} is {size} bytes, at most {limit}"
            )
        return self.take(size, what)


def parse_event_log(data: bytes) -> EventLog:
    """Parse a crypto-agile TCG event log (``binary_bios_measurements``).

    Raises ``BootLogInvalid`` (a ``TpmFormatError``) with the byte offset for an empty, truncated,
    oversized or otherwise malformed log: a legacy SHA-1-only log (no Spec ID Event03 header),
    an event whose digests are not exactly the header's banks, sizes over the caps, more than
    ``MAX_EVENTS`` events, more than one StartupLocality event or one after PCR 0 was extended.
    """
    if not data:
        raise BootLogInvalid("boot log is empty")
    if len(data) > MAX_LOG_BYTES:
        raise BootLogInvalid(f"boot log is {len(data)} bytes, at most {MAX_LOG_BYTES} accepted")
    cursor = _Cursor(bytes(data))
    spec, algs = _parse_header(cursor)
    sizes = {alg: size for alg, (_, size) in algs.items()}
    names = {alg: name for alg, (name, _) in algs.items()}
    events: list[Event] = []
    locality: int | None = None
    pcr0_extended = False
    end = len(cursor.data)
    while cursor.pos < end:
        if len(events) >= MAX_EVENTS:
            raise BootLogInvalid(
                f"boot log has more than {MAX_EVENTS} events (offset {cursor.pos})"
            )
        at = cursor.pos
        event = _parse_event2(cursor, sizes, names)
        if event.event_type == EventType.EV_NO_ACTION:
            if event.pcr == 0 and event.data.startswith(STARTUP_LOCALITY_SIGNATURE):
                locality = _startup_locality(event, at, locality, pcr0_extended)
        elif event.pcr == 0:
            pcr0_extended = True
        events.append(event)
    return EventLog(spec=spec, events=tuple(events), startup_locality=locality or 0)


_HeaderAlgs = dict[int, tuple[str, int]]  # TPM_ALG_ID → (bank name, digest size)


def _parse_header(cursor: _Cursor) -> tuple[SpecIdEvent, _HeaderAlgs]:
    pcr, event_type = cursor.unpack(_EVENT_HEAD, "header event")
    if pcr != 0 or event_type != EventType.EV_NO_ACTION:
        raise BootLogInvalid(
            f"boot log header at offset 0 is PCR {pcr} type 0x{event_type:08x}, not the "
            "EV_NO_ACTION Spec ID event of a crypto-agile log"
        )
    cursor.take(_LEGACY_DIGEST_BYTES, "header digest")
    body = _Cursor(cursor.sized("header event data", MAX_EVENT_DATA_BYTES))
    base = cursor.pos - len(body.data)
    try:
        return _parse_spec_id(body)
    except BootLogInvalid as e:
        raise BootLogInvalid(f"{e.message} (Spec ID event data starts at offset {base})") from None


def _parse_spec_id(body: _Cursor) -> tuple[SpecIdEvent, _HeaderAlgs]:
    signature = body.take(len(SPEC_ID_SIGNATURE), "Spec ID signature")
    if signature != SPEC_ID_SIGNATURE:
        raise BootLogInvalid(
            f"boot log header signature is {signature!r}, not {SPEC_ID_SIGNATURE!r}: "
            "not a crypto-agile (TPM 2.0) log"
        )
    platform, minor, major, errata, uintn, count = body.unpack(_SPEC_ID_HEAD, "Spec ID event")
    if not 1 <= count <= MAX_ALGORITHMS:
        raise BootLogInvalid(f"Spec ID event lists {count} algorithms, 1..{MAX_ALGORITHMS} allowed")
    algs: _HeaderAlgs = {}
    for _ in range(count):
        at = body.pos
        alg, size = body.unpack(_U16, "algorithm id")[0], body.unpack(_U16, "digest size")[0]
        name = _bank_name(alg)
        if alg in algs:
            raise BootLogInvalid(f"Spec ID event lists {name} twice (offset {at})")
        if not 1 <= size <= MAX_DIGEST_BYTES:
            raise BootLogInvalid(f"Spec ID event: {name} digest size {size} (offset {at})")
        expected = _known_size(alg)
        if expected is not None and size != expected:
            raise BootLogInvalid(
                f"Spec ID event: {name} digest size {size}, the algorithm has {expected} "
                f"(offset {at})"
            )
        algs[alg] = (name, size)
    (vendor_size,) = body.unpack(_U8, "vendorInfoSize")
    vendor_info = body.take(vendor_size, "vendorInfo")
    if body.pos != len(body.data):
        raise BootLogInvalid(
            f"Spec ID event has {len(body.data) - body.pos} trailing bytes after offset {body.pos}"
        )
    spec = SpecIdEvent(
        platform_class=platform,
        spec_version=(major, minor, errata),
        uintn_size=uintn,
        digest_sizes={name: size for name, size in algs.values()},
        vendor_info=vendor_info,
    )
    return spec, algs


def _known_size(alg: int) -> int | None:
    """The digest size of a hash algorithm we know, None for others (SM3, vendor ids)."""
    try:
        return digest_size(alg)
    except TpmFormatError:
        return None


def _parse_event2(cursor: _Cursor, sizes: Mapping[int, int], names: Mapping[int, str]) -> Event:
    at = cursor.pos
    pcr, event_type, count = cursor.unpack(_EVENT2_HEAD, "event header")
    if pcr > 31:  # PFP allows 0-23 plus vendor PCRs; anything larger is nonsense
        raise BootLogInvalid(f"boot log event at offset {at} names PCR {pcr}")
    if count != len(sizes):
        raise BootLogInvalid(
            f"boot log event at offset {at} has {count} digests, the header lists {len(sizes)}"
        )
    digests: dict[str, bytes] = {}
    for _ in range(count):
        alg_at = cursor.pos
        (alg,) = cursor.unpack(_U16, "digest algorithm")
        size = sizes.get(alg)
        name = names.get(alg)
        if size is None or name is None:
            raise BootLogInvalid(
                f"boot log event at offset {at}: algorithm 0x{alg:04x} (offset {alg_at}) is not "
                "in the log header"
            )
        if name in digests:
            raise BootLogInvalid(f"boot log event at offset {at} has two {name} digests")
        digests[name] = cursor.take(size, f"{name} digest")
    data = cursor.sized("event data", MAX_EVENT_DATA_BYTES)
    return Event(pcr=pcr, event_type=event_type, digests=digests, data=data)


def _startup_locality(event: Event, at: int, seen: int | None, pcr0_extended: bool) -> int:
    if seen is not None:
        raise BootLogInvalid(f"boot log has a second StartupLocality event at offset {at}")
    if pcr0_extended:
        raise BootLogInvalid(f"StartupLocality event at offset {at} comes after PCR 0 was extended")
    if len(event.data) != len(STARTUP_LOCALITY_SIGNATURE) + 1:
        raise BootLogInvalid(
            f"StartupLocality event at offset {at} has {len(event.data)} data bytes, not 17"
        )
    locality = event.data[-1]
    if locality not in (0, 3, 4):
        raise BootLogInvalid(f"StartupLocality event at offset {at}: locality {locality}")
    return locality


def encode_event_log(log: EventLog) -> bytes:
    """The binary form of ``log`` (``parse_event_log`` inverts it; the header event's legacy
    digest is written as zeros, as firmware does). For simulators and tests.

    Raises ``ValueError`` for a bank the header does not name or a digest of the wrong size.
    """
    ids = {name: alg for alg, name in _known_names(log.spec.banks).items()}
    spec = log.spec
    body = bytearray(SPEC_ID_SIGNATURE)
    major, minor, errata = spec.spec_version
    body += _SPEC_ID_HEAD.pack(
        spec.platform_class, minor, major, errata, spec.uintn_size, len(spec.digest_sizes)
    )
    for name, size in spec.digest_sizes.items():
        body += _U16.pack(ids[name]) + _U16.pack(size)
    body += _U8.pack(len(spec.vendor_info)) + spec.vendor_info
    out = bytearray(_EVENT_HEAD.pack(0, EventType.EV_NO_ACTION))
    out += bytes(_LEGACY_DIGEST_BYTES) + _U32.pack(len(body)) + body
    for event in log.events:
        out += _EVENT2_HEAD.pack(event.pcr, event.event_type, len(event.digests))
        for name, digest in event.digests.items():
            if name not in ids or len(digest) != spec.digest_sizes[name]:
                raise ValueError(f"event on PCR {event.pcr}: bad {name} digest for this log")
            out += _U16.pack(ids[name]) + digest
        out += _U32.pack(len(event.data)) + event.data
    return bytes(out)


def _known_names(banks: Iterable[str]) -> dict[int, str]:
    """TPM_ALG_ID of each bank name (``_bank_name`` inverted)."""
    ids: dict[int, str] = {}
    for name in banks:
        if name.startswith("alg_"):
            ids[int(name.removeprefix("alg_"), 16)] = name
        elif name.upper() in Alg.__members__:
            ids[Alg[name.upper()].value] = name
        else:
            raise ValueError(f"unknown bank name {name!r}")
    return ids
