"""Accuracy estimates and the NMEA digest."""

from __future__ import annotations

import hashlib

import pytest

from geofence.fix import AccuracySource, horizontal_accuracy, nmea_digest, vertical_accuracy


def test_gst_preferred_over_hdop() -> None:
    acc, src = horizontal_accuracy(sigma_lat_m=3.0, sigma_lon_m=4.0, hdop=1.0)
    assert (acc, src) == (10.0, AccuracySource.GST)


def test_hdop_times_uere() -> None:
    acc, src = horizontal_accuracy(sigma_lat_m=None, sigma_lon_m=4.0, hdop=1.5, uere_m=4.0)
    assert src is AccuracySource.HDOP
    assert acc == pytest.approx(12.0)


def test_no_accuracy() -> None:
    assert horizontal_accuracy(sigma_lat_m=None, sigma_lon_m=None, hdop=None) == (
        None,
        AccuracySource.NONE,
    )
    assert horizontal_accuracy(sigma_lat_m=None, sigma_lon_m=None, hdop=0.0)[0] is None


def test_vertical_accuracy() -> None:
    assert vertical_accuracy(sigma_alt_m=3.0, vdop=2.0) == 6.0
    assert vertical_accuracy(sigma_alt_m=None, vdop=2.0) == 20.0
    assert vertical_accuracy(sigma_alt_m=None, vdop=None) is None


def test_nmea_digest_known_answer() -> None:
    lines = ["$GPGGA,,,,,,0,,,,,,,,*66", "$GPRMC,,V,,,,,,,,,,N*53"]
    expected = hashlib.sha256(b"$GPGGA,,,,,,0,,,,,,,,*66\n$GPRMC,,V,,,,,,,,,,N*53\n").digest()
    assert nmea_digest(lines) == expected
