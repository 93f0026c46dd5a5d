"""Figures of a fault case: printed, and appended as a JSON line to ``$GEOATTEST_FAULT_FIGURES``
when it is set (``docs/reliability.md`` is written from them)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def record_figures(figures: dict[str, object]) -> None:
    print(json.dumps(figures))
    target = os.environ.get("GEOATTEST_FAULT_FIGURES")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(json.dumps(figures) + "\n")
