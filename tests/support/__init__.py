"""Test support: swtpm templates and helpers shared by the integration and e2e suites.

Manufacturing a TPM (``swtpm_setup`` with EK and platform certificates) takes about a second, so a
session keeps a pool of manufactured *template* states and every test gets a private copy of one:
its own state, ports and process, so nothing a test does (persisted AKs, extended PCRs) leaks into
another. Within one test the n-th TPM asked for (per CA and ``ecc``) is a copy of the n-th template,
so the TPMs of a test have distinct EKs. Across tests the same ordinal means the same EK identity:
a test must not assume an EK was never seen by another test's registrar.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC
from tpm2_pytss.types import TPM2B_PUBLIC

from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance

SWTPM_BINARIES = ("swtpm", "swtpm_setup", "swtpm_localca")


def require_swtpm() -> None:
    """Skip (or, on CI, fail) when the swtpm tools are not installed."""
    missing = [name for name in SWTPM_BINARIES if shutil.which(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not on PATH: apt-get install swtpm swtpm-tools"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the swtpm tests: {reason}")
    pytest.skip(reason)


class SwtpmTemplates:
    """Manufactured, never-started TPM states, made lazily and reused for the whole session."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._ca_ids: dict[Path, int] = {}

    def template(self, ca: SwtpmCa, *, ecc: bool, ordinal: int) -> Path:
        """State dir of template number ``ordinal`` for (``ca``, ``ecc``), manufacturing it once."""
        with self._lock:
            ca_id = self._ca_ids.setdefault(ca.directory, len(self._ca_ids))
            path = self._root / f"ca{ca_id}-{'ecc' if ecc else 'rsa'}-{ordinal}"
            SwtpmInstance.setup(path, ca, ecc=ecc)
            return path


class MakeSwtpm(Protocol):
    """The ``make_swtpm`` fixture: a started swtpm, stopped at teardown."""

    def __call__(self, *, ca: SwtpmCa | None = None, ecc: bool = True) -> SwtpmInstance: ...


class SwtpmFactory:
    """Per-test factory behind ``make_swtpm``: copies templates, starts and later stops them."""

    def __init__(self, templates: SwtpmTemplates, default_ca: SwtpmCa, workdir: Path) -> None:
        self._templates = templates
        self._default_ca = default_ca
        self._workdir = workdir
        self._counts: dict[tuple[Path, bool], int] = {}
        self._instances: list[SwtpmInstance] = []

    def __call__(self, *, ca: SwtpmCa | None = None, ecc: bool = True) -> SwtpmInstance:
        ca = ca or self._default_ca
        key = (ca.directory, ecc)
        ordinal = self._counts.get(key, 0)
        self._counts[key] = ordinal + 1
        template = self._templates.template(ca, ecc=ecc, ordinal=ordinal)
        state = self._workdir / f"swtpm-{len(self._instances)}"
        instance = SwtpmInstance.copy_of(template, state)
        self._instances.append(instance)
        instance.start()
        return instance

    def stop_all(self) -> None:
        for instance in self._instances:
            instance.stop()


@contextmanager
def swtpm_factory(
    templates: SwtpmTemplates, default_ca: SwtpmCa, workdir: Path
) -> Iterator[SwtpmFactory]:
    """A ``SwtpmFactory`` whose instances are all stopped on exit."""
    factory = SwtpmFactory(templates, default_ca, workdir)
    try:
        yield factory
    finally:
        factory.stop_all()


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_CURVES: dict[int, ec.EllipticCurve] = {
    TPM2_ECC.NIST_P256: ec.SECP256R1(),
    TPM2_ECC.NIST_P384: ec.SECP384R1(),
}


def public_key_of(tpm2b_public: bytes) -> PublicKey:
    """The cryptography key of a marshalled TPM2B_PUBLIC (RSA or ECC P-256/P-384), for tests that
    check TPM output with nothing but cryptography."""
    public, _ = TPM2B_PUBLIC.unmarshal(tpm2b_public)
    area = public.publicArea
    if area.type == TPM2_ALG.RSA:
        exponent = int(area.parameters.rsaDetail.exponent) or 65537
        modulus = int.from_bytes(bytes(area.unique.rsa), "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    curve = _CURVES[int(area.parameters.eccDetail.curveID)]
    x = int.from_bytes(bytes(area.unique.ecc.x), "big")
    y = int.from_bytes(bytes(area.unique.ecc.y), "big")
    return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
