"""Read EK trust material from disk and hand it to the pure ``allowlists`` constructors.

The imperative shell for ``allowlists.ek_trust`` and ``allowlists.pins``: this module does the
file I/O so that those stay pure. Errors are ``ConfigurationError`` naming the path, since these
files are read at start-up.
"""

from __future__ import annotations

from pathlib import Path

from allowlists.ek_trust import EkTrustStore
from allowlists.pins import PinSet, parse_pins
from geoattest.errors import ConfigurationError, PolicyInvalid

TRUST_STORE_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})
"""Files of a trust-store directory that are read; others (README, hidden files) are skipped."""


def load_trust_store_dir(path: Path) -> EkTrustStore:
    """Load every certificate file (``TRUST_STORE_SUFFIXES``) directly in ``path``.

    Not recursive; hidden files are skipped. Raises ``ConfigurationError`` when the directory
    is missing or unreadable, holds no certificate file, or a file is not a certificate file.
    """
    try:
        files = sorted(
            entry
            for entry in path.iterdir()
            if entry.is_file()
            and not entry.name.startswith(".")
            and entry.suffix.lower() in TRUST_STORE_SUFFIXES
        )
        blobs = {entry.name: entry.read_bytes() for entry in files}
    except OSError as e:
        raise ConfigurationError(f"EK trust store {path}: {e.strerror or e}") from e
    if not blobs:
        suffixes = ", ".join(sorted(TRUST_STORE_SUFFIXES))
        raise ConfigurationError(f"EK trust store {path} holds no certificate files ({suffixes})")
    try:
        return EkTrustStore.from_blobs(blobs)
    except PolicyInvalid as e:
        raise ConfigurationError(f"EK trust store {path}: {e.message}") from e


def load_pins_file(path: Path | None) -> PinSet | None:
    """Parse the purchase-order pins file, or None (pins not configured) when path is None.

    Raises ``ConfigurationError`` when the file cannot be read or is not a valid pins file.
    """
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"EK pins file {path}: {e}") from e
    try:
        pins = parse_pins(text)
    except PolicyInvalid as e:
        raise ConfigurationError(f"EK pins file {path}: {e.message}") from e
    if not pins.configured:  # a pins file was asked for: an empty one must not mean "no pinning"
        raise ConfigurationError(f"EK pins file {path} holds no pins; remove --pins to disable")
    return pins
