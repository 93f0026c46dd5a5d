"""allowlists.ek_policy: chain first, then pin."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from allowlists.ek_policy import check_ek
from allowlists.ek_trust import EkTrustStore
from allowlists.pins import parse_pins
from geoattest.errors import EkNotPinned, EkUntrusted
from tests.unit.allowlists.conftest import leaf_bytes

NUVOTON = "nuvoton_ek_leaf_nonDER.der"
NUVOTON_SHA256 = "933cdb174526b0b63216e5bdbd65a18c3f2ce3584a91ac2bbfa27cb526f932a0"
OPTIGA = "infineon_optiga_rsa_ek_leaf_CA035.der"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
PINNED = parse_pins(f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\npurchase_order = "PO-42"\n')
OTHER_PIN = parse_pins(f'[[pin]]\nsha256 = "{"ab" * 32}"\npurchase_order = "PO-1"\n')


def test_trusted_ek_without_pins(vendor_store: EkTrustStore) -> None:
    verdict = check_ek(leaf_bytes(NUVOTON), store=vendor_store, pins=None, now=NOW)
    assert verdict.pin is None
    assert verdict.certificate.fingerprint_hex == NUVOTON_SHA256
    assert verdict.chain.leaf == verdict.certificate
    assert "Nuvoton TPM Root CA 2111" in verdict.chain.anchor.subject


def test_empty_pinset_means_pins_not_configured(vendor_store: EkTrustStore) -> None:
    verdict = check_ek(leaf_bytes(NUVOTON), store=vendor_store, pins=parse_pins(""), now=NOW)
    assert verdict.pin is None


def test_trusted_and_pinned_ek(vendor_store: EkTrustStore) -> None:
    verdict = check_ek(leaf_bytes(NUVOTON), store=vendor_store, pins=PINNED, now=NOW)
    assert verdict.pin is not None
    assert verdict.pin.purchase_order == "PO-42"


def test_trusted_but_unpinned_ek_is_refused(vendor_store: EkTrustStore) -> None:
    with pytest.raises(EkNotPinned, match="matches none of 1 purchase-order pins"):
        check_ek(leaf_bytes(NUVOTON), store=vendor_store, pins=OTHER_PIN, now=NOW)


def test_pinned_but_untrusted_ek_is_refused(vendor_store: EkTrustStore) -> None:
    optiga = leaf_bytes(OPTIGA)
    pins = parse_pins(
        f'[[pin]]\nsha256 = "{hashlib.sha256(optiga).hexdigest()}"\npurchase_order = "PO-9"\n'
    )
    with pytest.raises(EkUntrusted, match="not found in trust store"):
        check_ek(optiga, store=vendor_store, pins=pins, now=NOW)


def test_untrusted_and_unpinned_reports_untrusted(vendor_store: EkTrustStore) -> None:
    with pytest.raises(EkUntrusted):
        check_ek(leaf_bytes(OPTIGA), store=vendor_store, pins=OTHER_PIN, now=NOW)


def test_garbage_ek_is_untrusted(vendor_store: EkTrustStore) -> None:
    with pytest.raises(EkUntrusted, match="neither DER"):
        check_ek(b"ek", store=vendor_store, pins=None, now=NOW)
