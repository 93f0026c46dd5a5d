"""NMEA line parsing against every real capture, plus hostile input."""

from __future__ import annotations

import functools

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.epochs import fixes_from_lines
from geofence.nmea import NmeaParser, ParseStats, RejectReason, parse_lines, split_lines
from geofence.sentences import Gga, Gsv, Proprietary, Rmc
from tests.paths import vector

# "sentences" column of data/nmea/README.md: non-comment lines starting with '$'.
SENTENCES = {
    "bt451.log": 144,
    "nl2008u.log": 127,
    "haicom-305N.log": 325,
    "ublox-neo-m9n-nmea.log": 1403,
    "furuno_gl_ga.log": 306,
    "quectel-eg25-g.log": 861,
    "garmin-geko201.log": 213,
    "st-teseo-liv4f.log": 330,
    "april6_2019.log": 3,
    "skytraq-err.log": 6,
}
# The defects the README lists, by line number in the file (1-based), and nothing else.
REJECTED = {
    "garmin-geko201.log": [(224, RejectReason.NO_CHECKSUM)],  # $GPBOD,,T,,M,,*  (empty checksum)
    "st-teseo-liv4f.log": [(329, RejectReason.BAD_CHECKSUM)],  # $GPGSV ...*6E, should be 6C
    "skytraq-err.log": [(n, RejectReason.NO_CHECKSUM) for n in range(9, 15)],  # $STI,IC,error=N
}
PROPRIETARY = {"furuno_gl_ga.log": 114, "quectel-eg25-g.log": 146, "garmin-geko201.log": 34,
               "st-teseo-liv4f.log": 28}  # fmt: skip


@functools.cache
def parsed(name: str) -> tuple[list[object], ParseStats]:
    sentences, stats = parse_lines(split_lines(vector(f"nmea/{name}").read_bytes()))
    return list(sentences), stats


@pytest.mark.parametrize("name", sorted(SENTENCES))
def test_capture_counts(name: str) -> None:
    _, stats = parsed(name)
    assert stats.accepted + stats.rejected == SENTENCES[name]
    assert [(r.line_no, r.reason) for r in stats.rejections] == REJECTED.get(name, [])
    assert stats.proprietary == PROPRIETARY.get(name, 0)


def test_doubled_dollar_is_resynced() -> None:
    _, stats = parsed("st-teseo-liv4f.log")
    assert stats.resynced == 330
    assert stats.accepted == 329


def test_comments_and_blank_lines_are_not_errors() -> None:
    _, stats = parsed("nl2008u.log")  # its header has a UTF-8 name (Günzl)
    assert stats.comments == 18  # grep -c '^#'
    assert stats.rejected == 0


def test_mixed_line_endings() -> None:
    data = vector("nmea/bt451.log").read_bytes()
    assert data.count(b"\r\n") == 45
    sentences, stats = parse_lines(split_lines(data))
    assert stats.rejected == 0
    assert all(not s.text.endswith("\r") for s in sentences)


def test_empty_gga_has_no_position() -> None:
    s = NmeaParser().parse(b"$GPGGA,,,,,,0,,,,,,,,*66\r\n")
    assert s is not None
    assert isinstance(s.body, Gga)
    assert s.body.latitude is None  # pynmea2 would say 0.0
    assert s.body.quality == 0


def test_rmc_fields_and_week_rollover_date() -> None:
    p = NmeaParser()
    s = p.parse("$GPRMC,000231.099,A,4829.0005,N,00022.0015,E,0.15,212.28,2208-1,,,A*73")
    assert s is not None
    assert isinstance(s.body, Rmc)
    assert s.body.date is None
    assert s.body.date_invalid
    assert s.body.latitude == pytest.approx(48.483341667)
    assert s.body.mode == "A"


def test_gsv_with_signal_id() -> None:
    s = NmeaParser().parse("$GPGSV,4,4,16,29,46,133,43,44,45,171,45,46,45,191,43,51,43,156,43,1*60")
    assert s is not None
    assert isinstance(s.body, Gsv)
    assert s.body.signal_id == "1"
    assert [x.cn0_dbhz for x in s.body.satellites] == [43, 45, 43, 43]


def test_proprietary_recorded() -> None:
    s = NmeaParser().parse("$PSTMVER,SWCFG_86065331*62")
    assert s is not None
    assert s.body == Proprietary(manufacturer="STM")


def _sentence(body: str) -> str:
    checksum = 0
    for ch in body:
        checksum ^= ord(ch)
    return f"${body}*{checksum:02X}"


GOOD_GGA = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (_sentence(GOOD_GGA)[:-2] + "00", "bad_checksum"),
        ("$" + GOOD_GGA, "no_checksum"),
        ("GPGGA,123519,4807.038,N*00", "not_nmea"),
        (_sentence(GOOD_GGA.replace("123519", "12a519")), "bad_field"),
        (_sentence(GOOD_GGA.replace(",0.9,", ",nan,")), "bad_field"),
        (_sentence(GOOD_GGA.replace("4807.038", "4867.038")), "bad_field"),  # 67 minutes
        (_sentence(GOOD_GGA.replace(",N,", ",Q,")), "bad_field"),
        (_sentence("GPXYZ,1,2"), "malformed"),  # a sentence type nobody defines
        ("$" + "A" * 600 + "*00", "too_long"),
        (b"$GPGGA,\xff*00", "not_ascii"),
    ],
)
def test_bad_lines_are_counted(line: str | bytes, reason: str) -> None:
    """Framing errors at ``parse``; bad fields when the sentence is converted (lazily)."""
    p = NmeaParser()
    s = p.parse(line)
    if reason == "bad_field":
        assert s is not None
        assert p.stats().accepted == 1
        assert s.checked_body() is None
        assert s.checked_body() is None  # counted once
        with pytest.raises(ValueError, match=r"bad|not|range"):
            s.body  # noqa: B018 - the property converts
    else:
        assert s is None
    stats = p.stats()
    assert (stats.accepted, stats.rejected) == (0, 1)
    assert stats.rejections[0].reason == reason
    assert stats.rejections[0].line_no == 1


def test_bad_field_never_reaches_a_fix_and_is_counted() -> None:
    good = vector("nmea/nl2008u.log").read_bytes()
    lines = split_lines(good)
    index = next(i for i, ln in enumerate(lines) if ln.startswith(b"$GNGGA"))
    bad_gga = _sentence(lines[index].decode().strip()[1:-3].replace(",N,", ",Q,", 1)).encode()
    lines[index] = bad_gga
    clean, _ = fixes_from_lines(split_lines(good))
    fixes, stats = fixes_from_lines(lines)
    assert [(r.line_no, r.reason) for r in stats.rejections] == [
        (index + 1, RejectReason.BAD_FIELD)
    ]
    assert stats.accepted + stats.rejected == SENTENCES["nl2008u.log"]
    assert all(bad_gga.decode() not in f.nmea_digest.hex() for f in fixes)
    changed = [f for f, c in zip(fixes, clean, strict=True) if f.nmea_digest != c.nmea_digest]
    assert len(changed) == 1  # the epoch without its GGA: no GGA altitude or quality
    assert changed[0].quality is None


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["GP", "GN", "gp", "G_", "P1", "BD"]),
    st.sampled_from(["GGA", "RMC", "GSV", "gsv", "XYZ", "GGQ"]),
    st.text(alphabet="0123456789.,-+NSEWAV*$ ", max_size=60),
    st.sampled_from(["", "ok", "00", "zz", "+1", "0a", "A"]),
)
def test_fast_path_frames_like_pynmea2(talker: str, kind: str, fields: str, tail: str) -> None:
    """Accepted or rejected (and why) exactly as through ``pynmea2.parse(check=True)``."""
    body = f"{talker}{kind},{fields}"
    line = _sentence(body) if tail == "ok" else f"${body}*{tail}"
    fast = NmeaParser()
    sentence = fast.parse(line)
    try:
        msg = pynmea2.parse(line[line.rfind("$") :], check=True)
        expected = "ok"
    except pynmea2.ChecksumError:
        expected = "bad_checksum"
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        expected = "malformed"
    stats = fast.stats()
    got = "ok" if stats.rejected == 0 else str(stats.rejections[0].reason)
    if got in ("no_checksum", "not_nmea"):
        got = "bad_checksum" if expected == "bad_checksum" else "malformed"
    if expected == "ok" and isinstance(msg, pynmea2.TalkerSentence) and sentence is not None:
        assert sentence.talker == msg.talker
        assert (sentence.kind, sentence.text) == (msg.sentence_type, line[line.rfind("$") :])
    assert got == expected or (expected == "bad_checksum" and got == "malformed")


def test_good_line_accepted() -> None:
    s = NmeaParser().parse(_sentence(GOOD_GGA))
    assert s is not None
    assert isinstance(s.body, Gga)
    assert s.body.satellites == 8


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=20))
def test_random_bytes_never_raise(lines: list[bytes]) -> None:
    p = NmeaParser()
    for line in lines:
        p.parse(line)
    assert p.stats().lines == len(lines)


_TYPES = ["RMC", "GGA", "GNS", "GSA", "GSV", "VTG", "GST", "TXT", "ZDA", "GLL", "STMVER"]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["GP", "GN", "GL", "P"]),
    st.sampled_from(_TYPES),
    st.text(alphabet="0123456789.,-+NSEWAVDMe", max_size=80),
)
def test_checksummed_garbage_fields_never_raise(talker: str, kind: str, fields: str) -> None:
    p = NmeaParser()
    s = p.parse(_sentence(f"{talker}{kind},{fields}"))
    if s is not None:
        s.checked_body()
    stats = p.stats()
    assert stats.accepted + stats.rejected == 1
