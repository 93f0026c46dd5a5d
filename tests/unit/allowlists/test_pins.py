"""allowlists.pins: the purchase-order pins format and matching."""

from __future__ import annotations

import pytest
from cryptography import x509

from allowlists.certs import EkCertificate, load_certificate
from allowlists.pins import Pin, PinSet, parse_pins
from geoattest.errors import EkNotPinned, PolicyInvalid
from tests.unit.allowlists.conftest import leaf_bytes

NUVOTON_SHA256 = "933cdb174526b0b63216e5bdbd65a18c3f2ce3584a91ac2bbfa27cb526f932a0"
NUVOTON_SERIAL = "0x8e71607435e271f985d6"
# RFC 4514 string with the multi-valued RDN in yet another order than the certificate's.
NUVOTON_ISSUER = "O=Nuvoton Technology Corporation+C=TW+CN=Nuvoton TPM Root CA 2111"


@pytest.fixture(scope="module")
def nuvoton() -> EkCertificate:
    return load_certificate(leaf_bytes("nuvoton_ek_leaf_nonDER.der"))


@pytest.fixture(scope="module")
def infineon() -> EkCertificate:
    return load_certificate(leaf_bytes("infineon_optiga_rsa_ek_leaf_CA035.der"))


def test_fingerprint_pin_matches(nuvoton: EkCertificate, infineon: EkCertificate) -> None:
    pins = parse_pins(
        f"""
        version = 1
        [[pin]]
        sha256 = "{infineon.fingerprint_hex}"
        purchase_order = "PO-2026-0001"

        [[pin]]
        sha256 = "{NUVOTON_SHA256.upper()}"
        purchase_order = "PO-2026-0042"
        asset_tag = "edge-fra-017"
        """
    )
    pin = pins.match(nuvoton)
    assert (pin.index, pin.purchase_order, pin.asset_tag) == (1, "PO-2026-0042", "edge-fra-017")
    assert pins.match(infineon).purchase_order == "PO-2026-0001"


def test_fingerprint_with_colons_as_openssl_prints_it(nuvoton: EkCertificate) -> None:
    colons = ":".join(NUVOTON_SHA256[i : i + 2] for i in range(0, 64, 2)).upper()
    pins = parse_pins(f'[[pin]]\nsha256 = "{colons}"\npurchase_order = "PO-1"\n')
    assert pins.match(nuvoton).purchase_order == "PO-1"


def test_issuer_serial_pin_matches(nuvoton: EkCertificate) -> None:
    pins = parse_pins(
        f"""
        [[pin]]
        issuer = "{NUVOTON_ISSUER}"
        serial = "{NUVOTON_SERIAL.upper().replace("X", "x")}"
        purchase_order = "PO-2026-0042"
        """
    )
    assert pins.match(nuvoton).purchase_order == "PO-2026-0042"
    assert pins.pins[0].issuer == nuvoton.issuer_name


def test_issuer_serial_pin_with_integer_serial(infineon: EkCertificate) -> None:
    issuer = infineon.issuer_name.rfc4514_string()
    pins = parse_pins(
        f'[[pin]]\nissuer = "{issuer}"\nserial = {infineon.serial}\npurchase_order = "PO-7"\n'
    )
    assert pins.match(infineon).purchase_order == "PO-7"


def test_unpinned_ek_is_refused(nuvoton: EkCertificate, infineon: EkCertificate) -> None:
    pins = parse_pins(f'[[pin]]\nsha256 = "{infineon.fingerprint_hex}"\npurchase_order = "PO-1"\n')
    with pytest.raises(EkNotPinned, match=f"sha256 {NUVOTON_SHA256} .* matches none of 1"):
        pins.match(nuvoton)


def test_same_serial_other_issuer_is_not_a_match(nuvoton: EkCertificate) -> None:
    pins = parse_pins(
        f'[[pin]]\nissuer = "CN=Nuvoton TPM Root CA 2110,O=Nuvoton Technology Corporation,C=TW"'
        f'\nserial = "{NUVOTON_SERIAL}"\npurchase_order = "PO-1"\n'
    )
    with pytest.raises(EkNotPinned):
        pins.match(nuvoton)


def test_same_issuer_other_serial_is_not_a_match(nuvoton: EkCertificate) -> None:
    pins = parse_pins(
        f'[[pin]]\nissuer = "{NUVOTON_ISSUER}"\nserial = "0x8e71607435e271f985d7"\n'
        'purchase_order = "PO-1"\n'
    )
    with pytest.raises(EkNotPinned):
        pins.match(nuvoton)


def test_empty_document_means_not_configured(nuvoton: EkCertificate) -> None:
    pins = parse_pins("# no pins yet\n")
    assert not pins.configured
    assert len(pins) == 0
    with pytest.raises(EkNotPinned, match="none of 0"):
        pins.match(nuvoton)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[pin]\n", "not valid TOML"),
        ("pins = []\n", r"unknown top-level keys \['pins'\]"),
        ("version = 2\n", "unsupported version 2"),
        ("version = true\n", "unsupported version True"),
        ('pin = "x"\n', "array of tables"),
        ("pin = [1]\n", r"pin\[0\] must be a table"),
        (
            f'[[pin]]\nsha265 = "{NUVOTON_SHA256}"\npurchase_order = "P"\n',
            r"unknown keys \['sha265'\]",
        ),
        ('[[pin]]\npurchase_order = "P"\n', r"pin\[0\]: needs 'sha256' or 'issuer' \+ 'serial'"),
        (
            f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\nserial = 1\nissuer = "CN=x"\n'
            'purchase_order = "P"\n',
            "not both",
        ),
        ('[[pin]]\nissuer = "CN=x"\npurchase_order = "P"\n', "must be given together"),
        ('[[pin]]\nserial = 5\npurchase_order = "P"\n', "must be given together"),
        ('[[pin]]\nsha256 = "abcd"\npurchase_order = "P"\n', "64 hex digits, got 'abcd'"),
        ('[[pin]]\nsha256 = 12\npurchase_order = "P"\n', "64 hex digits"),
        ('[[pin]]\nissuer = "CN=x"\nserial = "1234"\npurchase_order = "P"\n', "hex string"),
        ('[[pin]]\nissuer = "CN=x"\nserial = "0xzz"\npurchase_order = "P"\n', "hex string"),
        ('[[pin]]\nissuer = "CN=x"\nserial = -3\npurchase_order = "P"\n', "must not be negative"),
        ('[[pin]]\nissuer = "CN=x"\nserial = true\npurchase_order = "P"\n', "hex string"),
        ('[[pin]]\nissuer = "no equals sign"\nserial = 1\npurchase_order = "P"\n', "RFC 4514"),
        ('[[pin]]\nissuer = ""\nserial = 1\npurchase_order = "P"\n', "non-empty RFC 4514"),
        (f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\n', "'purchase_order' must be a non-empty"),
        (f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\npurchase_order = " "\n', "purchase_order"),
        (f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\npurchase_order = 42\n', "purchase_order"),
        (
            f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\npurchase_order = "P"\nasset_tag = 7\n',
            "'asset_tag' must be a non-empty",
        ),
    ],
)
def test_malformed_pins_are_refused(text: str, reason: str) -> None:
    with pytest.raises(PolicyInvalid, match=reason):
        parse_pins(text)


def test_error_names_the_entry_index() -> None:
    text = (
        f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\npurchase_order = "P"\n'
        '[[pin]]\nsha256 = "nothex"\npurchase_order = "P"\n'
    )
    with pytest.raises(PolicyInvalid, match=r"^pins: pin\[1\]: 'sha256'"):
        parse_pins(text)


def test_duplicate_fingerprint_pins_are_refused() -> None:
    entry = f'[[pin]]\nsha256 = "{NUVOTON_SHA256}"\npurchase_order = "P"\n'
    with pytest.raises(PolicyInvalid, match=r"pin\[1\] names the same certificate as pin\[0\]"):
        parse_pins(entry + entry.replace(NUVOTON_SHA256, NUVOTON_SHA256.upper()))


def test_duplicate_issuer_serial_pins_are_refused() -> None:
    first = (
        f'[[pin]]\nissuer = "{NUVOTON_ISSUER}"\nserial = "{NUVOTON_SERIAL}"\npurchase_order = "A"\n'
    )
    reordered = "C=TW+CN=Nuvoton TPM Root CA 2111+O=Nuvoton Technology Corporation"
    second = (
        f'[[pin]]\nissuer = "{reordered}"\nserial = {int(NUVOTON_SERIAL, 16)}\n'
        'purchase_order = "B"\n'
    )
    with pytest.raises(PolicyInvalid, match=r"pin\[1\] names the same certificate as pin\[0\]"):
        parse_pins(first + second)


def test_pinset_of_refuses_a_pin_without_identity() -> None:
    with pytest.raises(PolicyInvalid, match=r"pin\[0\] names no certificate"):
        PinSet.of((Pin(index=0, purchase_order="P"),))


def test_describe_names_the_pin() -> None:
    pins = parse_pins(
        f'[[pin]]\nissuer = "{NUVOTON_ISSUER}"\nserial = "{NUVOTON_SERIAL}"\npurchase_order = "A"\n'
    )
    assert pins.pins[0].describe() == (
        f"pin[0] issuer '{x509.Name.from_rfc4514_string(NUVOTON_ISSUER).rfc4514_string()}' "
        f"serial {NUVOTON_SERIAL}"
    )
