"""CLI number types: finite floats within range, ports within 1..65535."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from geoattest.cli_types import PORT, FiniteFloatRange


@click.command()
@click.option("--x", type=FiniteFloatRange(-1, 1), default=0.0)
@click.option("--port", type=PORT, default=80)
def show(x: float, port: int) -> None:
    click.echo(f"{x} {port}")


@pytest.mark.parametrize(
    "args",
    [["--x", "nan"], ["--x", "-NaN"], ["--x", "inf"], ["--x", "1e999"], ["--x", "2"],
     ["--port", "0"], ["--port", "65536"], ["--port", "-1"], ["--port", "http"]],
)  # fmt: skip
def test_refused_at_parse_time(args: list[str]) -> None:
    result = CliRunner().invoke(show, args)
    assert result.exit_code == 2
    assert "Invalid value" in result.output


def test_accepted_values_pass_through() -> None:
    result = CliRunner().invoke(show, ["--x", "-0.5", "--port", "65535"])
    assert result.exit_code == 0, result.output
    assert result.output == "-0.5 65535\n"
