"""The GNSS receiver as a value: what identifies it, its fingerprint, and its round trip through
the signed location evidence."""

from __future__ import annotations

import hashlib
import os

from geofence import GnssReceiver, LocationEvidence, SourceKind, decode_evidence, encode_evidence
from tests.unit.geofence.captures import fixes


def _navilock() -> GnssReceiver:
    fix = fixes("nl2008u.log")[0]
    assert fix.receiver is not None
    return GnssReceiver(source=SourceKind.SERIAL, texts=fix.receiver.texts, device="/dev/ttyACM0")


def test_a_real_banner_gives_model_and_firmware() -> None:
    receiver = _navilock()
    assert receiver.identified
    assert receiver.model == "UBX-M80xx 00080000"
    assert receiver.firmware == "2.01 (75331) Oct 29 2013 13:28:17"
    st = fixes("st-teseo-liv4f.log")[0].receiver
    assert st is not None
    teseo = GnssReceiver(source=SourceKind.GPSD, texts=st.texts)
    assert teseo.firmware == "STA8041_4.6.8.5.9_ARM"


def test_the_fingerprint_is_the_documented_digest_of_source_and_identity() -> None:
    receiver = _navilock()
    expected = hashlib.sha256(
        b"geoattest-gnss-receiver-v1\x00serial\x00" + " | ".join(receiver.texts).encode()
    ).digest()
    assert receiver.fingerprint() == expected


def test_the_device_path_is_not_part_of_the_fingerprint() -> None:
    """The evidence does not carry the device: a receiver on another port is the same one."""
    receiver = _navilock()
    moved = GnssReceiver(source=receiver.source, texts=receiver.texts, device="/dev/ttyUSB3")
    assert moved.same_as(receiver)


def test_another_source_kind_or_banner_is_another_receiver() -> None:
    receiver = _navilock()
    assert not GnssReceiver(source=SourceKind.GPSD, texts=receiver.texts).same_as(receiver)
    assert not GnssReceiver(source=receiver.source, texts=receiver.texts[:-1]).same_as(receiver)
    unidentified = GnssReceiver(source=SourceKind.SERIAL)
    assert not unidentified.identified
    assert not unidentified.same_as(receiver)
    assert "unidentified" in unidentified.describe()


def test_the_receiver_a_signed_evidence_names_is_the_one_that_produced_the_fix() -> None:
    """Enrolment and rounds see the same fingerprint for the same receiver and source."""
    fix = fixes("nl2008u.log")[0]
    ev = LocationEvidence.from_fix(fix, nonce=os.urandom(32), source=SourceKind.SERIAL)
    seen = GnssReceiver.from_evidence(decode_evidence(encode_evidence(ev)))
    assert seen.same_as(_navilock())
    no_banner = fixes("ublox-neo-m9n-nmea.log")[0]
    ev = LocationEvidence.from_fix(no_banner, nonce=os.urandom(32), source=SourceKind.GPSD)
    assert GnssReceiver.from_evidence(ev) == GnssReceiver(source=SourceKind.GPSD)


def test_texts_are_normalised_as_the_evidence_joins_them() -> None:
    """A banner holding the separator splits as the evidence's ``receiver`` field would."""
    joined = GnssReceiver(source=SourceKind.SERIAL, texts=("FW 1.0 | HW 2",))
    assert joined.texts == ("FW 1.0", "HW 2")
    assert joined.same_as(GnssReceiver(source=SourceKind.SERIAL, texts=("FW 1.0", "HW 2")))
