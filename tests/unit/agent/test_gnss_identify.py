"""``agent enrol --gnss`` finds the receiver it will read: real captures through the real file
source; a receiver without a banner, a silent one and an absent port are unidentified."""

from __future__ import annotations

from pathlib import Path

from agent.gnss.identify import device_of, identify_configured, identify_receiver, receiver_wire
from agent.gnss.source import FileReplaySource
from agent.gnss.spec import parse_source_spec
from geofence import GnssReceiver, LocationEvidence, SourceKind, fixes_from_lines
from tests.paths import vector


def test_a_receiver_with_a_banner_is_identified_as_its_fixes_name_it() -> None:
    capture = vector("nmea/nl2008u.log")
    receiver = identify_receiver(FileReplaySource(capture), device=str(capture))
    assert receiver.identified
    assert receiver.model == "UBX-M80xx 00080000"
    assert receiver.device == str(capture)
    # The fingerprint a round's evidence will show for the same receiver and source kind.
    fix = fixes_from_lines(capture.read_bytes().splitlines())[0][3]
    evidence = LocationEvidence.from_fix(fix, nonce=bytes(32), source=SourceKind.FILE)
    assert GnssReceiver.from_evidence(evidence).same_as(receiver)
    wire = receiver_wire(receiver)
    assert wire.source == "file"
    assert wire.texts == list(receiver.texts)


def test_a_receiver_without_a_banner_is_unidentified() -> None:
    capture = vector("nmea/ublox-neo-m9n-nmea.log")
    receiver = identify_receiver(FileReplaySource(capture), device=None)
    assert receiver == GnssReceiver(source=SourceKind.FILE)


def test_a_silent_or_absent_receiver_is_unidentified(tmp_path: Path) -> None:
    empty = tmp_path / "silent.nmea"
    empty.write_bytes(b"")
    assert not identify_receiver(FileReplaySource(empty), device=None).identified
    missing = identify_receiver(FileReplaySource(tmp_path / "gone.nmea"), device=None)
    assert missing == GnssReceiver(source=SourceKind.FILE)
    absent = identify_configured("serial:/dev/geoattest-no-such-port")
    assert absent == GnssReceiver(source=SourceKind.SERIAL, device="/dev/geoattest-no-such-port")


def test_the_device_is_where_the_receiver_is_read() -> None:
    assert device_of(parse_source_spec("gpsd:10.0.0.2")) == "10.0.0.2:2947"
    assert device_of(parse_source_spec("gpsd:[::1]:3000")) == "[::1]:3000"
    assert device_of(parse_source_spec("serial:/dev/ttyACM0?baud=38400")) == "/dev/ttyACM0"
