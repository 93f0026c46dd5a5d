"""Epoch assembly: every real capture gives the fix count its README row implies."""

from __future__ import annotations

import datetime as dt

import pytest

from geofence.epochs import EpochAssembler, fixes_from_lines
from geofence.fix import AccuracySource, nmea_digest
from geofence.nmea import NmeaParser
from tests.unit.geofence.captures import CAPTURES, capture, fixes

# Epochs with a position: RMC status A or GGA quality != 0 (how the README computes its bboxes).
FIX_COUNTS = {
    "april6_2019.log": 2,  # "1 V, 2 A"
    "bt451.log": 14,  # 13 RMC A, plus the GGA-only epoch 14:33:06.00 where two sessions join
    "furuno_gl_ga.log": 16,  # RMC 16, all A
    "garmin-geko201.log": 18,  # GGA quality 8 (simulated) with coordinates in all 18 epochs
    "haicom-305N.log": 68,  # README: "first RMC V, then A"; in fact 6 V then 68 A (grep ',A,')
    "nl2008u.log": 9,  # "all 9 RMC A"
    "quectel-eg25-g.log": 23,  # "37 RMC V, 23 A"
    "skytraq-err.log": 0,  # no position
    "st-teseo-liv4f.log": 12,  # RMC 12, static fix
    "ublox-neo-m9n-nmea.log": 61,  # RMC 61
}
# README bounding boxes (lat min, lat max, lon min, lon max), rounded to 5 decimals there.
BBOX = {
    "bt451.log": (55.78027, 55.79703, 23.56901, 23.57877),
    "nl2008u.log": (48.21734, 48.22080, 8.41448, 8.42188),
    "haicom-305N.log": (-27.21091, -27.21066, 153.05189, 153.05233),
    "ublox-neo-m9n-nmea.log": (38.11049, 38.11050, -122.62693, -122.62690),
    "quectel-eg25-g.log": (36.76277, 36.76461, 31.41054, 31.41177),
    "garmin-geko201.log": (40.39767, 40.39937, -3.65272, -3.65272),
}


def test_every_capture_is_covered() -> None:
    assert set(FIX_COUNTS) == set(CAPTURES)


@pytest.mark.parametrize("name", CAPTURES)
def test_fix_counts(name: str) -> None:
    assert len(fixes(name)) == FIX_COUNTS[name]


@pytest.mark.parametrize("name", sorted(BBOX))
def test_positions_within_readme_bbox(name: str) -> None:
    lat0, lat1, lon0, lon1 = BBOX[name]
    for f in fixes(name):
        assert lat0 - 6e-6 <= f.latitude <= lat1 + 6e-6
        assert lon0 - 6e-6 <= f.longitude <= lon1 + 6e-6


def test_ublox_fix_fields() -> None:
    f = fixes("ublox-neo-m9n-nmea.log")[0]
    assert f.utc == dt.datetime(2020, 7, 11, 22, 37, 45, tzinfo=dt.UTC)
    assert f.quality == 2
    assert f.rmc_mode == "D"
    assert f.hdop == 0.54
    assert (f.pdop, f.vdop) == (0.99, 0.83)
    assert f.altitude_m == 83.1
    # GST: sigma lat 0.98 m, lon 1.0 m -> 2DRMS
    assert f.accuracy_source is AccuracySource.GST
    assert f.horizontal_accuracy_m == pytest.approx(2 * (0.98**2 + 1.0**2) ** 0.5)
    assert f.satellites_used == 25  # 8 + 7 + 5 + 5 PRNs over four GNGSA
    constellations = {s.constellation for s in f.signals}
    assert constellations == {"GPS", "GLONASS", "Galileo", "BeiDou"}
    assert f.speed_mps == pytest.approx(0.040 * 1852 / 3600)


def test_hdop_based_accuracy_when_no_gst() -> None:
    f = fixes("nl2008u.log")[0]
    assert f.accuracy_source is AccuracySource.HDOP
    assert f.horizontal_accuracy_m == pytest.approx(2 * 0.7 * 5.0)


def test_receiver_identity_from_txt() -> None:
    ident = fixes("nl2008u.log")[0].receiver
    assert ident is not None
    assert "HW UBX-M80xx 00080000" in ident.texts
    assert "PROTVER 15.00" in ident.texts
    assert not any("ANTSTATUS" in t for t in ident.texts)
    teseo = fixes("st-teseo-liv4f.log")[0].receiver
    assert teseo is not None
    assert "PSTMVER BINIMG_STA8041_4.6.8.5.9_ARM" in teseo.texts
    assert fixes("ublox-neo-m9n-nmea.log")[0].receiver is None


def test_week_rollover_date_gives_no_utc() -> None:
    first, second = fixes("april6_2019.log")
    assert first.utc is None  # date field "2208-1"
    assert second.utc is not None
    assert second.utc.year == 1999  # "220899", valid-looking but wrong


def test_bt451_time_goes_backwards() -> None:
    times = [f.utc for f in fixes("bt451.log")]
    assert all(t is not None for t in times)
    backwards = [i for i in range(1, len(times)) if times[i] < times[i - 1]]  # type: ignore[operator]
    assert backwards == [8]


def test_no_fix_epochs_give_no_fix() -> None:
    lines = ["$GPGGA,,,,,,0,,,,,,,,*66", "$GPRMC,,V,,,,,,,,,,N*53"] * 3
    assert fixes_from_lines(lines)[0] == []


def test_digest_covers_the_epoch_sentences() -> None:
    lines = [
        "$GPRMC,095304.802,A,2712.6520,S,15303.1397,E,0.00,133.96,080407,,,A*78",
        "$GPGGA,095305.802,2712.6547,S,15303.1350,E,1,04,21.1,3.0,M,42.2,M,,*75",
    ]
    got, _ = fixes_from_lines(lines)
    assert [f.nmea_digest for f in got] == [nmea_digest([lines[0]]), nmea_digest([lines[1]])]
    assert len({f.nmea_digest for f in fixes("furuno_gl_ga.log")}) == 16


def test_streaming_equals_batch() -> None:
    data = capture("quectel-eg25-g.log")
    parser, assembler = NmeaParser(), EpochAssembler()
    from tests.paths import vector

    streamed = []
    for line in vector("nmea/quectel-eg25-g.log").read_bytes().split(b"\n"):
        s = parser.parse(line)
        if s is not None and (f := assembler.feed(s)) is not None:
            streamed.append(f)
    if (f := assembler.flush()) is not None:
        streamed.append(f)
    assert tuple(streamed) == data[0]
