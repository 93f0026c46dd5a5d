"""Where tests find the public test vectors kept in the repository (``tests/vectors/``)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS = REPO_ROOT / "tests" / "vectors"


def vector(relative: str) -> Path:
    """Path of a file or directory under ``tests/vectors`` (origins in its ``PROVENANCE.md``).

    A missing vector fails the test loudly, naming the path: the vectors are part of the
    repository, so a missing one means the checkout is broken, not that the test may skip.
    """
    path = VECTORS / relative
    if not path.exists():
        pytest.fail(f"test vector missing: {path} (tests/vectors is part of the repository)")
    return path
