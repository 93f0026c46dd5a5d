"""Click parameter types that refuse what a human never means: NaN, infinities, port 0 or 70000.

``click.FloatRange`` lets ``nan`` through (every comparison with NaN is false, so it is "within"
any range) and turns ``1e400`` into ``inf``; a position or radius of NaN then crashes deep in the
geometry code. These fail at parse time with click's usage error (exit code 2).
"""

from __future__ import annotations

import math

import click

__all__ = ["PORT", "FiniteFloatRange"]

PORT = click.IntRange(1, 65535)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` of finite numbers only."""

    name = "finite float range"

    def convert(
        self, value: str | float, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        converted: float = super().convert(number, param, ctx)
        return converted
