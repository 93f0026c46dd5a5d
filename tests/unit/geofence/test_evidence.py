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
    LocationEvidence,
    decode_evidence,
    encode_evidence,
    evidence_digest,
)
from geofence.fix import Fix
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
    )


def test_known_answer() -> None:
    expected = (
        b'{"accuracy_source":"gst","altitude_m":83.100,"course_deg":null,"gns_mode":null,'
        b'"hdop":0.54,"horizontal_accuracy_m":2.801,"latitude":38.110494000,'
        b'"longitude":-122.626897000,"nmea_digest":"' + b"ab" * 32 + b'","nonce":"0102",'
        b'"quality":2,"receiver":"u-blox \\"M9\\"","rmc_mode":"D","satellites_used":25,'
        b'"speed_mps":0.000,"type":"geoattest.location-evidence",'
        b'"utc":"2020-07-11T22:37:45.500000Z","v":1}'
    )
    assert encode_evidence(sample()) == expected
    assert evidence_digest(expected) == hashlib.sha256(expected).digest()


@pytest.mark.parametrize("name", ["ublox-neo-m9n-nmea.log", "nl2008u.log", "st-teseo-liv4f.log"])
def test_round_trip_real_fixes(name: str) -> None:
    for f in fixes(name):
        ev = LocationEvidence.from_fix(f, nonce=NONCE)
        data = encode_evidence(ev)
        assert decode_evidence(data) == ev
        assert encode_evidence(decode_evidence(data)) == data
        assert ev.nmea_digest == f.nmea_digest


def test_evidence_binds_nonce_and_nmea() -> None:
    f = fixes("ublox-neo-m9n-nmea.log")[0]
    a = encode_evidence(LocationEvidence.from_fix(f, nonce=NONCE))
    b = encode_evidence(LocationEvidence.from_fix(f, nonce=NONCE[::-1]))
    c = encode_evidence(
        LocationEvidence.from_fix(dataclasses.replace(f, nmea_digest=b"\0" * 32), nonce=NONCE)
    )
    assert len({evidence_digest(x) for x in (a, b, c)}) == 3


def test_fix_without_date_is_not_evidence() -> None:
    first = fixes("april6_2019.log")[0]
    with pytest.raises(LocationEvidenceInvalid, match="no valid UTC date"):
        LocationEvidence.from_fix(first, nonce=NONCE)


def _mutations(data: bytes) -> list[bytes]:
    return [
        data.replace(b",", b", ", 1),  # whitespace
        data.replace(b'"quality":2', b'"quality":2.0'),
        data.replace(b"38.110494000", b"38.110494"),  # other float formatting
        data.replace(b"0102", b"0102".upper().replace(b"0", b"0")).replace(b"ab", b"AB"),
        data.replace(b'"v":1', b'"v":2'),
        data.replace(b'"rmc_mode":"D",', b""),  # missing field
        data[:-1] + b',"extra":1}',
        data.replace(b'"hdop":0.54', b'"hdop":0.54,"hdop":0.54'),  # duplicate key
        data.replace(b"22:37:45.500000Z", b"22:37:45.5Z"),
        data.replace(b'"quality":2', b'"quality":"2"'),
        data.replace(b'"receiver":"u-blox \\"M9\\""', b'"receiver":7'),
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
    ],
)
def test_signed_but_impossible_values_are_refused(field: str, value: float) -> None:
    ev = LocationEvidence.from_fix(_range_fix(), nonce=b"\x01" * 32)
    changes: dict[str, Any] = {field: value}
    encoded = encode_evidence(dataclasses.replace(ev, **changes))
    with pytest.raises(LocationEvidenceInvalid, match=field.split("_")[0]):
        decode_evidence(encoded)


def _range_fix() -> Fix:
    return fixes("nl2008u.log")[0]
