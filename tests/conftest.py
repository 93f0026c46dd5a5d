"""Shared fixtures: real software TPMs with EK certificates from a per-session test CA.

- ``test_ca`` / ``foreign_ca`` (session): two swtpm_localca CAs with the same subject names and
  different keys; a registrar trusting ``test_ca.trust_store`` must refuse ``foreign_ca``'s TPMs.
- ``make_swtpm(ca=..., ecc=...)`` (function): a started swtpm, distinct EK per call within a test.
- ``swtpm`` (function): the first ``make_swtpm()`` of the test.
- ``tpm_device`` (function): an open ``TpmDevice`` on ``swtpm``.

Tests marked ``swtpm`` are skipped only when the swtpm tools are missing and ``CI`` is unset;
on CI they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tpm_device import TpmDevice
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from tests.support import MakeSwtpm, SwtpmTemplates, require_swtpm, swtpm_factory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a ``slow`` test run first, each file's tests kept together in their order.
    ``deploy/test`` hands whole files to parallel workers in this order (``--dist loadfile``):
    a long file handed out last would run alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within stays


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("swtpm") is not None:
        require_swtpm()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> SwtpmCa:
    """The session's TPM manufacturer CA; its ``trust_store`` is what registrars trust."""
    require_swtpm()
    return SwtpmCa.create(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="session")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> SwtpmCa:
    """Another manufacturer CA with the same subject names as ``test_ca`` but its own keys."""
    require_swtpm()
    return SwtpmCa.create(tmp_path_factory.mktemp("foreign-ca"))


@pytest.fixture(scope="session")
def swtpm_templates(tmp_path_factory: pytest.TempPathFactory) -> SwtpmTemplates:
    return SwtpmTemplates(tmp_path_factory.mktemp("swtpm-templates"))


@pytest.fixture
def make_swtpm(
    swtpm_templates: SwtpmTemplates, test_ca: SwtpmCa, tmp_path: Path
) -> Iterator[MakeSwtpm]:
    """Factory of started swtpms (EK certificate from ``ca``, default ``test_ca``); all are
    stopped at teardown."""
    with swtpm_factory(swtpm_templates, test_ca, tmp_path) as factory:
        yield factory


@pytest.fixture
def swtpm(make_swtpm: MakeSwtpm) -> SwtpmInstance:
    """A started swtpm with an EK certificate from ``test_ca``; ``swtpm.tcti`` for settings."""
    return make_swtpm()


@pytest.fixture
def tpm_device(swtpm: SwtpmInstance) -> Iterator[TpmDevice]:
    """An open ``TpmDevice`` on ``swtpm`` (ECC EK), closed at teardown."""
    with TpmDevice(swtpm.tcti) as device:
        yield device
