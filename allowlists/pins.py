"""Purchase-order pins: which EK certificates this fleet actually bought.

A chain to a manufacturer CA proves a TPM is genuine, not that it is *ours*. Pins bind EK
certificates to purchase orders. The file format is TOML (full description: ``docs/ek-pins.md``)::

    version = 1                       # optional; only 1 exists

    [[pin]]
    sha256 = "933cdb17…32a0"          # sha256 of the EK certificate's DER bytes (colons allowed)
    purchase_order = "PO-2026-0042"
    asset_tag = "edge-fra-017"        # optional

    [[pin]]
    issuer = "CN=Nuvoton TPM Root CA 2111+O=Nuvoton Technology Corporation+C=TW"  # RFC 4514
    serial = "0x8e71607435e271f985d6" # "0x" hex string, or a TOML integer
    purchase_order = "PO-2026-0042"

Each pin names its certificate either by ``sha256`` or by ``issuer`` + ``serial``, never both.
Issuers compare as X.509 names (attribute order inside a multi-valued RDN and string types do
not matter). Unknown keys, duplicates and bad values are refused with ``PolicyInvalid`` naming
the entry as ``pin[i]`` (0-based). A file with no ``[[pin]]`` gives an empty ``PinSet``, which
means "pins not configured".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from allowlists.certs import EkCertificate
from geoattest.errors import EkNotPinned, PolicyInvalid

_TOP_KEYS = frozenset({"version", "pin"})
_PIN_KEYS = frozenset({"sha256", "issuer", "serial", "purchase_order", "asset_tag"})
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX_SERIAL = re.compile(r"0x[0-9a-f]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pin:
    """One pinned EK certificate, by fingerprint or by issuer and serial number."""

    index: int
    """Position in the pins file (0-based), for messages."""
    purchase_order: str
    asset_tag: str | None = None
    sha256: bytes | None = None
    issuer: x509.Name | None = None
    serial: int | None = None

    def describe(self) -> str:
        """How messages and logs name this pin."""
        if self.sha256 is not None:
            return f"pin[{self.index}] sha256 {self.sha256.hex()}"
        issuer = self.issuer.rfc4514_string() if self.issuer is not None else "?"
        return f"pin[{self.index}] issuer '{issuer}' serial {self.serial or 0:#x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PinSet:
    """All pins of a fleet, indexed. Empty means pins are not configured."""

    pins: tuple[Pin, ...]
    by_fingerprint: Mapping[bytes, Pin]
    by_issuer_serial: Mapping[tuple[x509.Name, int], Pin]

    @classmethod
    def of(cls, pins: tuple[Pin, ...]) -> PinSet:
        """Index ``pins``.

        Raises ``PolicyInvalid`` when a pin has neither a fingerprint nor issuer + serial, or
        when two pins name the same certificate.
        """
        by_fingerprint: dict[bytes, Pin] = {}
        by_issuer_serial: dict[tuple[x509.Name, int], Pin] = {}
        for pin in pins:
            if pin.sha256 is not None:
                earlier = by_fingerprint.setdefault(pin.sha256, pin)
            elif pin.issuer is not None and pin.serial is not None:
                earlier = by_issuer_serial.setdefault((pin.issuer, pin.serial), pin)
            else:
                raise PolicyInvalid(f"pins: pin[{pin.index}] names no certificate")
            if earlier is not pin:
                raise PolicyInvalid(
                    f"pins: pin[{pin.index}] names the same certificate as pin[{earlier.index}]"
                )
        return cls(pins=pins, by_fingerprint=by_fingerprint, by_issuer_serial=by_issuer_serial)

    @property
    def configured(self) -> bool:
        return bool(self.pins)

    def __len__(self) -> int:
        return len(self.pins)

    def match(self, cert: EkCertificate) -> Pin:
        """The pin naming ``cert`` (fingerprint first, then issuer + serial).

        Raises ``EkNotPinned`` when no pin names it (also when the set is empty: check
        ``configured`` first if "no pins" should mean "allow").
        """
        pin = self.by_fingerprint.get(cert.fingerprint)
        if pin is None:
            pin = self.by_issuer_serial.get((cert.issuer_name, cert.serial))
        if pin is None:
            raise EkNotPinned(
                f"EK certificate sha256 {cert.fingerprint_hex} (issuer '{cert.issuer}', "
                f"serial {cert.serial:#x}) matches none of {len(self.pins)} purchase-order pins"
            )
        return pin


def parse_pins(text: str) -> PinSet:
    """Parse a pins TOML document (format in the module docstring and ``docs/ek-pins.md``).

    Raises ``PolicyInvalid`` for invalid TOML, unknown keys, a pin without exactly one identity
    (``sha256`` or ``issuer`` + ``serial``), malformed values, or duplicate pins.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyInvalid(f"pins: not valid TOML: {e}") from e
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise PolicyInvalid(f"pins: unknown top-level keys {unknown}; expected [[pin]] tables")
    version = document.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise PolicyInvalid(f"pins: unsupported version {version!r}; only 1 exists")
    entries = document.get("pin", [])
    if not isinstance(entries, list):
        raise PolicyInvalid("pins: 'pin' must be an array of tables ([[pin]])")
    return PinSet.of(tuple(_parse_pin(i, entry) for i, entry in enumerate(entries)))


def _parse_pin(index: int, entry: object) -> Pin:
    where = f"pins: pin[{index}]"
    if not isinstance(entry, dict):
        raise PolicyInvalid(f"{where} must be a table")
    unknown = sorted(set(entry) - _PIN_KEYS)
    if unknown:
        raise PolicyInvalid(f"{where}: unknown keys {unknown}; allowed {sorted(_PIN_KEYS)}")
    purchase_order = _text(entry, "purchase_order", where)
    asset_tag = _text(entry, "asset_tag", where) if "asset_tag" in entry else None
    has_fingerprint = "sha256" in entry
    has_issuer_serial = "issuer" in entry or "serial" in entry
    if has_fingerprint and has_issuer_serial:
        raise PolicyInvalid(f"{where}: give either 'sha256' or 'issuer' + 'serial', not both")
    if not has_fingerprint and not has_issuer_serial:
        raise PolicyInvalid(f"{where}: needs 'sha256' or 'issuer' + 'serial'")
    if has_fingerprint:
        return Pin(
            index=index,
            purchase_order=purchase_order,
            asset_tag=asset_tag,
            sha256=_fingerprint(entry["sha256"], where),
        )
    if "issuer" not in entry or "serial" not in entry:
        raise PolicyInvalid(f"{where}: 'issuer' and 'serial' must be given together")
    return Pin(
        index=index,
        purchase_order=purchase_order,
        asset_tag=asset_tag,
        issuer=_issuer(entry["issuer"], where),
        serial=_serial(entry["serial"], where),
    )


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PolicyInvalid(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _fingerprint(value: object, where: str) -> bytes:
    text = value.replace(":", "").lower() if isinstance(value, str) else ""
    if not _HEX_SHA256.fullmatch(text):
        raise PolicyInvalid(f"{where}: 'sha256' must be 64 hex digits, got {value!r}")
    return bytes.fromhex(text)


def _issuer(value: object, where: str) -> x509.Name:
    if not isinstance(value, str) or not value.strip():
        raise PolicyInvalid(f"{where}: 'issuer' must be a non-empty RFC 4514 string")
    try:
        name = x509.Name.from_rfc4514_string(value)
    except ValueError as e:
        raise PolicyInvalid(f"{where}: 'issuer' is not an RFC 4514 name: {e}") from e
    if not list(name):
        raise PolicyInvalid(f"{where}: 'issuer' names no attributes")
    return name


def _serial(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        serial = value
    elif isinstance(value, str) and _HEX_SERIAL.fullmatch(value.replace(":", "").lower()):
        serial = int(value.replace(":", "").lower(), 16)
    else:
        raise PolicyInvalid(
            f"{where}: 'serial' must be a \"0x…\" hex string or a TOML integer, got {value!r}"
        )
    if serial < 0:
        raise PolicyInvalid(f"{where}: 'serial' must not be negative")
    return serial
