"""Real IMA logs and Keylime runtime policies from ``tests/vectors/keylime``."""

from __future__ import annotations

from tests.paths import vector

RUST_LOG = "keylime/ima_log/rust-keylime/ascii_runtime_measurements"
RUST_LOG_PCR10_SHA1 = "82231c67a69da98dc5b3aa10f6343d33109225fc"  # README: derived, cross-check
VERIFICATION = "keylime/ima_log/keylime_ima_verification"


def read(relative: str) -> str:
    return vector(relative).read_text(encoding="utf-8")


def vector_lines(name: str) -> list[str]:
    """Lines of a keylime_ima_verification log (``measurements``, ``signatures``, ...)."""
    text = read(f"{VERIFICATION}/{name}.ascii_runtime_measurements")
    return [line for line in text.split("\n") if line]
