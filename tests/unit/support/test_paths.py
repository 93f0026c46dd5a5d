"""tests.paths.vector: the repository's own test vectors, and a loud failure when one is missing."""

from __future__ import annotations

import pytest

from tests.paths import VECTORS, vector


def test_vector_returns_the_file_in_tests_vectors() -> None:
    path = vector("nmea/nl2008u.log")
    assert path == VECTORS / "nmea" / "nl2008u.log"
    assert path.read_bytes().startswith(b"#")  # gpsd's comment header is kept


def test_missing_vector_fails_naming_the_path() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"tests/vectors/nmea/absent\.log"):
        vector("nmea/absent.log")
