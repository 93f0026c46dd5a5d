"""Canonical location evidence: round trip, one encoding only, garbage rejected."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoattest.errors import LocationEvidenceInvalid
from geofence.evidence import (
    EVIDENCE_VERSION,
    MAX_CN0_SATELLITES,
    LocationEvidence,
    SourceKind,
    decode_evidence,
    encode_evidence,
    evidence_digest,
)
from geofence.fix import Fix, SatelliteSignal
from tests.unit.geofence.captures import fixes

NONCE = bytes(range(16))


def sample() -> LocationEvidence:
    return LocationEvidence(
        nonce=b"\x01\x02",
        utc=dt.datetime(2020, 7, 11, 22, 37, 45, 500000, tzinfo=dt.UTC),
        latitude=38.110494,
        longitude=-122.626897,
        altitude_m=83.1,
        horizontal_accuracy_m=2.801,
        accuracy_source="gst",
        quality=2,
        rmc_mode="D",
        gns_mode=None,
        satellites_used=25,
        hdop=0.54,
        speed_mps=-0.0,
        course_deg=None,
        receiver='u-blox "M9"',
        nmea_digest=b"\xab" * 32,
        rmc_status="A",
        cn0_dbhz=(("GPS:12", 45), ("GPS:5", 38), ("Galileo:3", 0)),
        source="serial",
        vertical_accuracy_m=6.6,
    )


def sample_v2() -> LocationEvidence:
    return dataclasses.replace(sample(), version=2, source=None, vertical_accuracy_m=None)


def sample_v1() -> LocationEvidence:
    return dataclasses.replace(
        sample(), version=1, rmc_status=None, cn0_dbhz=(), source=None, vertical_accuracy_m=None
    )


V1_ANSWER = (
    b'{"accuracy_source":"gst","altitude_m":83.100,"course_deg":null,"gns_mode":null,'
    b'"hdop":0.54,"horizontal_accuracy_m":2.801,"latitude":38.110494000,'
    b'"longitude":-122.626897000,"nmea_digest":"' + b"ab" * 32 + b'","nonce":"0102",'
    b'"quality":2,"receiver":"u-blox \\"M9\\"","rmc_mode":"D","satellites_used":25,'
    b'"speed_mps":0.000,"type":"geoattest.location-evidence",'
    b'"utc":"2020-07-11T22:37:45.500000Z","v":1}'
)


def test_known_answer() -> None:
    expected = (
        b'{"accuracy_source":"gst","altitude_m":83.100,'
        b'"cn0_dbhz":[["GPS:12",45],["GPS:5",38],["Galileo:3",0]],"course_deg":null,'
        b'"gns_mode":null,"hdop":0.54,"horizontal_accuracy_m":2.801,"latitude":38.110494000,'
        b'"longitude":-122.626897000,"nmea_digest":"' + b"ab" * 32 + b'","nonce":"0102",'
        b'"quality":2,"receiver":"u-blox \\"M9\\"","rmc_mode":"D","rmc_status":"A",'
        b'"satellites_used":25,"source":"serial","speed_mps":0.000,'
        b'"type":"geoattest.location-evidence","utc":"2020-07-11T22:37:45.500000Z","v":3,'
        b'"vertical_accuracy_m":6.600}'
    )
    assert EVIDENCE_VERSION == 3
    assert encode_evidence(sample()) == expected
    assert decode_evidence(expected) == sample()
    assert evidence_digest(expected) == hashlib.sha256(expected).digest()


def test_v2_still_decodes_as_v2() -> None:
    """Evidence signed before v3 (no source kind, no vertical accuracy) decodes for the track;
    ``check_location`` refuses it as a round's evidence (tests/unit/verifier/core)."""
    data = encode_evidence(sample_v2())
    assert b'"v":2' in data
    assert b'"source"' not in data
    assert b"vertical_accuracy_m" not in data
    assert decode_evidence(data) == sample_v2()
    with pytest.raises(LocationEvidenceInvalid, match="version 2 evidence cannot carry source"):
        encode_evidence(dataclasses.replace(sample(), version=2, vertical_accuracy_m=None))
    with pytest.raises(LocationEvidenceInvalid, match="cannot carry vertical_accuracy_m"):
        encode_evidence(
            dataclasses.replace(sample(), version=2, source=None, vertical_accuracy_m=0.0)
        )
    with pytest.raises(LocationEvidenceInvalid):  # v3 fields in a v2 document
        decode_evidence(data.replace(b'"speed_mps"', b'"source":"serial","speed_mps"'))


def test_v1_still_decodes_as_v1() -> None:
    """The verifier's remembered track holds evidence signed before the upgrade; it must decode
    (``check_location`` refuses v1 as a round's evidence: tests/unit/verifier/test_location.py)."""
    assert encode_evidence(sample_v1()) == V1_ANSWER
    ev = decode_evidence(V1_ANSWER)
    assert ev == sample_v1()
    assert (ev.version, ev.cn0_dbhz, ev.rmc_status) == (1, (), None)
    # v2 fields in a v1 document, or a v1 evidence holding v2 values, are not v1
    with pytest.raises(LocationEvidenceInvalid):
        decode_evidence(V1_ANSWER.replace(b'"course_deg"', b'"cn0_dbhz":[],"course_deg"'))
    with pytest.raises(LocationEvidenceInvalid, match="version 1"):
        encode_evidence(dataclasses.replace(sample(), version=1))
    with pytest.raises(LocationEvidenceInvalid, match="version"):
        encode_evidence(dataclasses.replace(sample(), version=4))


@pytest.mark.parametrize(
    "name",
    ["ublox-neo-m9n-nmea.log", "furuno_gl_ga.log", "nl2008u.log", "st-teseo-liv4f.log"],
)
def test_round_trip_real_fixes(name: str) -> None:
    for f in fixes(name):
        ev = LocationEvidence.from_fix(f, nonce=NONCE, source=SourceKind.SERIAL)
        data = encode_evidence(ev)
        assert decode_evidence(data) == ev
        assert encode_evidence(decode_evidence(data)) == data
        assert ev.nmea_digest == f.nmea_digest
        assert ev.rmc_status == f.rmc_status
        # the C/N0 set, one rounded value per satellite, as the plausibility check sees it
        assert sorted(v for _, v in ev.cn0_dbhz) == sorted(round(v) for v in f.cn0_values())
        assert [sat for sat, _ in ev.cn0_dbhz] == sorted({sat for sat, _ in ev.cn0_dbhz})


@pytest.mark.parametrize("name", ["ublox-neo-m9n-nmea.log", "furuno_gl_ga.log", "nl2008u.log"])
def test_real_captures_carry_cn0(name: str) -> None:
    evs = [LocationEvidence.from_fix(f, nonce=NONCE, source=SourceKind.SERIAL) for f in fixes(name)]
    assert all(len(ev.cn0_dbhz) >= 6 for ev in evs)
    assert all(0 <= v <= 99 for ev in evs for _, v in ev.cn0_dbhz)


def test_cn0_capped_at_the_strongest_satellites() -> None:
    f = _range_fix()
    many = tuple(
        SatelliteSignal(
            constellation="GPS",
            prn=prn,
            signal_id=None,
            elevation_deg=None,
            azimuth_deg=None,
            cn0_dbhz=float(prn % 50),
        )
        for prn in range(1, 101)
    )
    ev = LocationEvidence.from_fix(
        dataclasses.replace(f, signals=many), nonce=NONCE, source=SourceKind.SERIAL
    )
    assert len(ev.cn0_dbhz) == MAX_CN0_SATELLITES
    assert min(v for _, v in ev.cn0_dbhz) >= 49 - 32  # the weakest ones are dropped
    assert decode_evidence(encode_evidence(ev)) == ev


def test_evidence_binds_nonce_and_nmea() -> None:
    f = fixes("ublox-neo-m9n-nmea.log")[0]
    a = encode_evidence(LocationEvidence.from_fix(f, nonce=NONCE, source=SourceKind.SERIAL))
    b = encode_evidence(LocationEvidence.from_fix(f, nonce=NONCE[::-1], source=SourceKind.SERIAL))
    c = encode_evidence(
        LocationEvidence.from_fix(
            dataclasses.replace(f, nmea_digest=b"\0" * 32), nonce=NONCE, source=SourceKind.SERIAL
        )
    )
    assert len({evidence_digest(x) for x in (a, b, c)}) == 3


def test_fix_without_date_is_not_evidence() -> None:
    first = fixes("april6_2019.log")[0]
    with pytest.raises(LocationEvidenceInvalid, match="no valid UTC date"):
        LocationEvidence.from_fix(first, nonce=NONCE, source=SourceKind.SERIAL)


def _mutations(data: bytes) -> list[bytes]:
    return [
        data.replace(b",", b", ", 1),  # whitespace
        data.replace(b'"quality":2', b'"quality":2.0'),
        data.replace(b"38.110494000", b"38.110494"),  # other float formatting
        data.replace(b"0102", b"0102".upper().replace(b"0", b"0")).replace(b"ab", b"AB"),
        data.replace(b'"v":3', b'"v":1'),  # a v3 document is not v1
        data.replace(b'"v":3', b'"v":2'),  # nor v2
        data.replace(b'"v":3', b'"v":4'),
        data.replace(b'"v":3', b'"v":3.0'),
        data.replace(b'"v":3', b'"v":true'),
        data.replace(b'"source":"serial"', b'"source":null'),  # v3 always says its source
        data.replace(b'"source":"serial"', b'"source":"radio"'),
        data.replace(b'"source":"serial"', b'"source":"SERIAL"'),
        data.replace(b'"vertical_accuracy_m":6.600', b'"vertical_accuracy_m":6.6'),
        data.replace(b'"vertical_accuracy_m":6.600', b'"vertical_accuracy_m":-6.600'),
        data.replace(b',"vertical_accuracy_m":6.600', b""),
        data.replace(b'"rmc_mode":"D",', b""),  # missing field
        data[:-1] + b',"extra":1}',
        data.replace(b'"hdop":0.54', b'"hdop":0.54,"hdop":0.54'),  # duplicate key
        data.replace(b"22:37:45.500000Z", b"22:37:45.5Z"),
        data.replace(b'"quality":2', b'"quality":"2"'),
        data.replace(b'"receiver":"u-blox \\"M9\\""', b'"receiver":7'),
        data.replace(b'"rmc_status":"A",', b""),
        data.replace(b'["GPS:12",45]', b'["GPS:12", 45]'),  # whitespace inside C/N0
        data.replace(b'["GPS:12",45]', b'["GPS:12",45.0]'),  # C/N0 as a float
        data.replace(b'["GPS:12",45]', b'["GPS:12","45"]'),
        data.replace(b'["GPS:12",45]', b'["GPS:12",45,1]'),
        data.replace(b'["GPS:12",45]', b'{"GPS:12":45}'),
        data.replace(b'["GPS:12",45]', b'"GPS:12"'),
        data.replace(b'["GPS:12",45]', b"[12,45]"),
        data.replace(b'["GPS:12",45]', b'["GPS:12",true]'),
        data.replace(b'["GPS:12",45],["GPS:5",38]', b'["GPS:5",38],["GPS:12",45]'),  # unsorted
        data.replace(b'["GPS:12",45],["GPS:5",38]', b'["GPS:12",45],["GPS:12",38]'),  # repeated
        data.replace(b'"cn0_dbhz":[', b'"cn0_dbhz":null,"x":['),
        data.replace(b'"cn0_dbhz":[["GPS:12",45],', b'"cn0_dbhz":[').replace(b",38]", b",38"),
        b"\xff" + data,
        b"[]",
        b"{" * 5000,
    ]


def test_non_canonical_and_garbage_rejected() -> None:
    data = encode_evidence(sample())
    for bad in _mutations(data):
        assert bad != data
        with pytest.raises(LocationEvidenceInvalid):
            decode_evidence(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_rejected_cleanly(data: bytes) -> None:
    with pytest.raises(LocationEvidenceInvalid):
        decode_evidence(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latitude", 91.0),
        ("latitude", -90.5),
        ("longitude", 180.5),
        ("horizontal_accuracy_m", -1.0),
        ("hdop", -0.5),
        ("speed_mps", -3.0),
        ("vertical_accuracy_m", -0.5),
    ],
)
def test_signed_but_impossible_values_are_refused(field: str, value: float) -> None:
    ev = LocationEvidence.from_fix(_range_fix(), nonce=b"\x01" * 32, source=SourceKind.SERIAL)
    changes: dict[str, Any] = {field: value}
    encoded = encode_evidence(dataclasses.replace(ev, **changes))
    with pytest.raises(LocationEvidenceInvalid, match=field.split("_")[0]):
        decode_evidence(encoded)


@pytest.mark.parametrize(
    ("cn0", "match"),
    [
        ((("GPS:12", 100),), r"outside 0\.\.99"),
        ((("GPS:12", -1),), r"outside 0\.\.99"),
        ((("GPS:12", 40), ("GPS:12", 41)), "out of order or repeated"),
        ((("GPS:5", 40), ("GPS:12", 41)), "out of order or repeated"),
        ((("GPS12", 40),), "bad satellite id"),
        ((("GPS:012", 40),), "bad satellite id"),
        ((("GPS:-1", 40),), "bad satellite id"),
        ((("", 40),), "bad satellite id"),
        ((("G\u00e9:1", 40),), "bad satellite id"),
        (tuple((f"GPS:{n}", 40) for n in range(100, 100 + MAX_CN0_SATELLITES + 1)), "max 64"),
    ],
)
def test_signed_but_impossible_cn0_is_refused(cn0: tuple[tuple[str, int], ...], match: str) -> None:
    ev = LocationEvidence.from_fix(_range_fix(), nonce=b"\x01" * 32, source=SourceKind.SERIAL)
    encoded = encode_evidence(dataclasses.replace(ev, cn0_dbhz=cn0))
    with pytest.raises(LocationEvidenceInvalid, match=match):
        decode_evidence(encoded)


def test_fix_with_impossible_cn0_is_not_evidence() -> None:
    f = _range_fix()
    loud = tuple(dataclasses.replace(s, cn0_dbhz=120.0) for s in f.signals)
    with pytest.raises(LocationEvidenceInvalid, match=r"outside 0\.\.99"):
        LocationEvidence.from_fix(
            dataclasses.replace(f, signals=loud), nonce=NONCE, source=SourceKind.SERIAL
        )


def _range_fix() -> Fix:
    return fixes("nl2008u.log")[0]
