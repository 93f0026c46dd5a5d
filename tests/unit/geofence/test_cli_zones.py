"""``geoattest zones check`` output and exit codes (the shell's one table, ADR 0011)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geoattest.cli import main
from geoattest.cli_zones import EXIT_INSIDE, EXIT_INVALID, EXIT_OUTSIDE, EXIT_UNCERTAIN
from tests.paths import vector


def run(*args: str) -> tuple[int, str]:
    path = str(vector("zones/ne_110m_admin_0_countries.geojson"))
    result = CliRunner().invoke(main, ["zones", "check", path, *args])
    return result.exit_code, result.output


def test_the_codes_are_those_of_the_table() -> None:
    assert (EXIT_INSIDE, EXIT_OUTSIDE, EXIT_INVALID, EXIT_UNCERTAIN) == (0, 2, 3, 4)


def test_inside() -> None:
    code, out = run("--lat", "55.79", "--lon", "23.57", "--accuracy", "20", "--repair")
    assert code == EXIT_INSIDE
    assert "inside    LTU (Lithuania)" in out
    assert "repaired SDN (Sudan)" in out


def test_uncertain_and_outside() -> None:
    code, out = run("--lat", "55.79", "--lon", "23.57", "--accuracy", "80000", "--repair")
    assert code == EXIT_UNCERTAIN
    assert "uncertain LTU" in out
    code, out = run("--lat", "0", "--lon", "-30", "--repair")
    assert code == EXIT_OUTSIDE
    assert "outside all 177 zones" in out
    code, out = run("--lat", "55.79", "--lon", "23.57", "--zone", "FRA", "--repair")
    assert code == EXIT_OUTSIDE
    assert "outside   FRA (France)" in out


def test_invalid_file_and_usage() -> None:
    code, out = run("--lat", "55.79", "--lon", "23.57")
    assert code == EXIT_INVALID
    assert "'SDN' (Sudan): invalid geometry" in out
    assert "run again with --repair" in out
    code, _ = run("--lat", "95", "--lon", "0")
    assert code == 1
    code, out = run("--lat", "1", "--lon", "0", "--zone", "XXX", "--repair")
    assert code == 1
    assert "no zone with id 'XXX'" in out


@pytest.mark.parametrize(
    "args",
    [
        ("--lat", "nan", "--lon", "0"),
        ("--lat", "0", "--lon", "NaN"),
        ("--lat", "0", "--lon", "0", "--accuracy", "nan"),
        ("--lat", "0", "--lon", "0", "--accuracy", "inf"),
        ("--lat", "0", "--lon", "0", "--accuracy", "1e400"),
        ("--lat", "0", "--lon", "0", "--accuracy", "1e308"),
        ("--lat", "-inf", "--lon", "0"),
        ("--lat", "north", "--lon", "0"),
    ],
)
def test_numbers_a_human_never_means_are_usage_errors(args: tuple[str, ...]) -> None:
    path = str(vector("zones/ne_110m_admin_0_countries.geojson"))
    result = CliRunner().invoke(main, ["zones", "check", path, *args, "--repair"])
    assert result.exit_code == 1, result.output  # usage (the exit-code table, ADR 12)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Invalid value" in result.output
