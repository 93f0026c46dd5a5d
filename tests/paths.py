"""Where tests find the read-only public data that lives beside the repository (``../shared``)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """Path of a file under ``../shared/data``; the test fails loudly when the data is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.fail(f"shared test data missing: {path} (CI has ../shared beside the clone)")
    return path
