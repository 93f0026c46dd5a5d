"""Sealed model files: ``[12-byte IV][ciphertext][16-byte GCM tag]``, AES-256-GCM, no AAD.

Files are processed in 1 MiB chunks (model weights are gigabytes). Opening writes the
plaintext to a temporary file next to the output and renames it into place only once the tag
has verified, so a tampered or truncated file never leaves a plaintext behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from geoattest.errors import RequestError
from geoattest.private_files import create_private_file

__all__ = ["IV_BYTES", "KEY_BYTES", "TAG_BYTES", "SealedFileInvalid", "open_sealed", "seal"]

IV_BYTES, TAG_BYTES, KEY_BYTES = 12, 16, 32
_CHUNK = 1 << 20


class SealedFileInvalid(RequestError):
    """A sealed file does not open with this key: altered, truncated, or sealed with another."""

    code = "sealed_file_invalid"


def seal(source: Path, target: Path, key: bytes) -> int:
    """Seal ``source`` into ``target`` (created 0600); returns the sealed size."""
    _check_key(key)
    iv = os.urandom(IV_BYTES)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    partial.unlink(missing_ok=True)
    create_private_file(partial)
    try:
        with source.open("rb") as plain, partial.open("wb") as out:
            out.write(iv)
            while chunk := plain.read(_CHUNK):
                out.write(encryptor.update(chunk))
            out.write(encryptor.finalize())
            out.write(encryptor.tag)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def open_sealed(source: Path, target: Path, key: bytes) -> int:
    """Decrypt ``source`` into ``target`` (0600) once its tag verifies; returns the plaintext
    size. ``SealedFileInvalid`` (nothing written) otherwise."""
    _check_key(key)
    size = source.stat().st_size
    if size < IV_BYTES + TAG_BYTES:
        raise SealedFileInvalid(f"{source} is too short to be a sealed file")
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    partial.unlink(missing_ok=True)
    create_private_file(partial)
    try:
        with source.open("rb") as sealed, partial.open("wb") as out:
            iv = sealed.read(IV_BYTES)
            sealed.seek(size - TAG_BYTES)
            tag = sealed.read(TAG_BYTES)
            sealed.seek(IV_BYTES)
            decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, tag)).decryptor()
            remaining = size - IV_BYTES - TAG_BYTES
            while remaining:
                chunk = sealed.read(min(_CHUNK, remaining))
                remaining -= len(chunk)
                out.write(decryptor.update(chunk))
            decryptor.finalize()
        os.replace(partial, target)
    except InvalidTag as e:
        raise SealedFileInvalid(f"{source} does not open with this key (altered?)") from e
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise SealedFileInvalid(f"a model key is {KEY_BYTES} bytes, not {len(key)}")
