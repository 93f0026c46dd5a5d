"""One exported fleet for every bundle test of this package (building it runs a fleet)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.residency_bundles import Bundles, built_bundles


@pytest.fixture(scope="package")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundles]:
    with built_bundles(tmp_path_factory.mktemp("bundles")) as built:
        yield built
