"""TCG crypto-agile boot event logs: real firmware logs parse and replay to the published PCRs;
anything malformed, oversized or inconsistent is ``BootLogInvalid`` naming the offset."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import struct
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoattest.errors import BootLogInvalid, TpmFormatError
from tests.paths import vector
from tpm import (
    Event,
    EventLog,
    EventType,
    encode_event_log,
    parse_event_log,
    replay_event_log,
)
from tpm.eventlog import MAX_EVENT_DATA_BYTES, MAX_EVENTS, MAX_LOG_BYTES

VECTORS = "keylime/uefi_eventlog"


def _vector(name: str) -> bytes:
    if name == "mb_log.bin":
        return base64.b64decode(vector(f"{VECTORS}/mb_log.b64").read_text())
    if name == "uefi_log.bin":
        return vector(f"{VECTORS}/rust-keylime/uefi_log.bin").read_bytes()
    return vector(f"{VECTORS}/{name}").read_bytes()


LOGS = [
    "binary_bios_measurements",
    "binary_bios_measurements-secureboot",
    "uefi_log.bin",
    "mb_log.bin",
]
EXPECTED = json.loads(vector(f"{VECTORS}/replayed_pcrs.derived.json").read_text())
AGILE = _vector("binary_bios_measurements")  # sha1 + sha256, StartupLocality 3


@pytest.mark.parametrize("name", LOGS)
def test_real_logs_replay_to_the_published_pcrs(name: str) -> None:
    expected = EXPECTED[name]
    log = parse_event_log(_vector(name))
    assert len(log.events) == expected["events"]
    assert list(log.spec.banks) == expected["algs"]
    assert log.startup_locality == expected["startup_locality"]
    replayed = replay_event_log(log)
    assert {
        bank: {str(index): value.hex() for index, value in pcrs.items()}
        for bank, pcrs in replayed.items()
    } == expected["pcrs"]


@pytest.mark.parametrize("name", LOGS)
def test_encode_inverts_parse_byte_for_byte(name: str) -> None:
    data = _vector(name)
    assert encode_event_log(parse_event_log(data)) == data


def test_agile_log_header_and_events_are_typed() -> None:
    log = parse_event_log(AGILE)
    assert dict(log.spec.digest_sizes) == {"sha1": 20, "sha256": 32}
    assert log.spec.spec_version[0] == 2
    first = log.events[0]
    assert first.event_type == EventType.EV_NO_ACTION
    assert first.data == b"StartupLocality\x00\x03"
    assert all(set(e.digests) == {"sha1", "sha256"} for e in log.events)
    separators = [e.pcr for e in log.events if e.event_type == EventType.EV_SEPARATOR]
    assert set(range(8)) <= set(separators)


def test_startup_locality_sets_pcr0_start_value() -> None:
    log = parse_event_log(AGILE)
    without = replace(log, startup_locality=0)
    assert replay_event_log(without)["sha256"][0] != replay_event_log(log)["sha256"][0]
    assert replay_event_log(without)["sha256"][1] == replay_event_log(log)["sha256"][1]


def test_replay_of_one_bank_and_a_bank_the_log_lacks() -> None:
    log = parse_event_log(AGILE)
    assert list(replay_event_log(log, ["sha256"])) == ["sha256"]
    with pytest.raises(BootLogInvalid, match="no sha384 digests"):
        replay_event_log(log, ["sha384"])


def test_no_action_events_are_not_extended() -> None:
    log = parse_event_log(AGILE)
    noise = Event(
        pcr=4,
        event_type=EventType.EV_NO_ACTION,
        digests={"sha1": b"\x01" * 20, "sha256": b"\x01" * 32},
        data=b"",
    )
    noisy = replace(log, events=(*log.events, noise))
    assert replay_event_log(noisy) == replay_event_log(log)


def test_an_edited_digest_changes_only_its_pcr() -> None:
    log = parse_event_log(AGILE)
    index = next(i for i, e in enumerate(log.events) if e.pcr == 4)
    events = list(log.events)
    events[index] = replace(
        events[index], digests={"sha1": bytes(20), "sha256": hashlib.sha256(b"evil").digest()}
    )
    tampered = replay_event_log(replace(log, events=tuple(events)))
    honest = replay_event_log(log)
    assert tampered["sha256"][4] != honest["sha256"][4]
    assert {i: v for i, v in tampered["sha256"].items() if i != 4} == {
        i: v for i, v in honest["sha256"].items() if i != 4
    }


# --- negatives ------------------------------------------------------------------------------


def _one_bank_log(events: list[Event]) -> EventLog:
    base = parse_event_log(_vector("binary_bios_measurements-secureboot"))
    return replace(base, events=tuple(events))


def _event(pcr: int = 0, data: bytes = b"x", event_type: int = EventType.EV_ACTION) -> Event:
    return Event(pcr=pcr, event_type=event_type, digests={"sha256": bytes(32)}, data=data)


def _locality(value: int = 3) -> Event:
    return _event(0, b"StartupLocality\x00" + bytes([value]), EventType.EV_NO_ACTION)


def _invalid(data: bytes, match: str) -> BootLogInvalid:
    with pytest.raises(BootLogInvalid, match=match) as caught:
        parse_event_log(data)
    assert caught.value.code == "boot_log_invalid"
    assert isinstance(caught.value, TpmFormatError)
    return caught.value


def test_bogus_and_empty_vectors_are_refused() -> None:
    _invalid(_vector("binary_bios_measurements-bogus"), "offset 0")
    _invalid(_vector("binary_bios_measurements-empty"), "empty")


@pytest.mark.parametrize("cut", [3, 30, 60, 0x46, 200, len(AGILE) - 1])
def test_truncated_log_names_the_offset(cut: int) -> None:
    _invalid(AGILE[:cut], r"offset \d+")


def test_legacy_sha1_log_is_not_crypto_agile() -> None:
    data = bytearray(AGILE)
    data[0x20:0x30] = b"Spec ID Event02\x00"
    _invalid(bytes(data), "not a crypto-agile")


def test_digest_count_must_match_the_header() -> None:
    first_event2 = 32 + struct.unpack_from("<I", AGILE, 28)[0]
    data = bytearray(AGILE)
    struct.pack_into("<I", data, first_event2 + 8, 1)
    _invalid(bytes(data), f"offset {first_event2} has 1 digests, the header lists 2")


def test_digest_of_an_algorithm_not_in_the_header() -> None:
    first_event2 = 32 + struct.unpack_from("<I", AGILE, 28)[0]
    data = bytearray(AGILE)
    struct.pack_into("<H", data, first_event2 + 12, 0x000C)  # sha384
    _invalid(bytes(data), "algorithm 0x000c")


def test_oversized_event_data_and_log() -> None:
    log = _one_bank_log([_event()])
    data = bytearray(encode_event_log(log))
    struct.pack_into("<I", data, len(data) - 5, MAX_EVENT_DATA_BYTES + 1)
    _invalid(bytes(data), "at most")
    _invalid(b"\x00" * (MAX_LOG_BYTES + 1), "at most")


def test_too_many_events() -> None:
    _invalid(encode_event_log(_one_bank_log([_event()] * (MAX_EVENTS + 1))), "more than")


def test_startup_locality_must_come_once_and_first() -> None:
    _invalid(encode_event_log(_one_bank_log([_locality(), _locality()])), "second")
    _invalid(encode_event_log(_one_bank_log([_event(0), _locality()])), "after PCR 0")
    _invalid(encode_event_log(_one_bank_log([_locality(7)])), "locality 7")
    assert parse_event_log(encode_event_log(_one_bank_log([_locality(4)]))).startup_locality == 4


def test_trailing_bytes_are_a_truncated_event() -> None:
    _invalid(AGILE + b"\x00\x00", "truncated")


def test_a_header_alone_is_a_log_of_no_events() -> None:
    log = parse_event_log(AGILE[:0x45])
    assert log.events == ()
    assert replay_event_log(log)["sha1"] == {0: bytes(20)}


# --- fuzz -----------------------------------------------------------------------------------

SEEDS = [AGILE, _vector("uefi_log.bin")[:4000]]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real log with a few bytes overwritten (often in the header), then maybe cut."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.one_of(st.integers(0, 200), st.integers(0, len(data) - 1)))
        data[position] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), mutated()))
def test_parser_raises_nothing_but_boot_log_invalid(data: bytes) -> None:
    with contextlib.suppress(BootLogInvalid):
        log = parse_event_log(data)
        replay_event_log(log, [b for b in log.spec.banks if b in ("sha1", "sha256")])
