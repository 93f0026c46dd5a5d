"""Sealed model files: the documented layout, and nothing written when the file was altered."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyrelease.sealing import SealedFileInvalid, open_sealed, seal


def test_layout_is_iv_ciphertext_tag_and_any_aes_gcm_opens_it(tmp_path: Path) -> None:
    key, model = os.urandom(32), os.urandom(3 * 1024 * 1024 + 7)  # over several chunks
    (tmp_path / "model.bin").write_bytes(model)
    seal(tmp_path / "model.bin", tmp_path / "model.enc", key)
    sealed = (tmp_path / "model.enc").read_bytes()
    assert len(sealed) == 12 + len(model) + 16
    assert AESGCM(key).decrypt(sealed[:12], sealed[12:], None) == model
    assert model not in sealed
    open_sealed(tmp_path / "model.enc", tmp_path / "out.bin", key)
    assert (tmp_path / "out.bin").read_bytes() == model
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o600


@pytest.mark.parametrize("change", ["flip", "truncate", "key"])
def test_an_altered_file_or_another_key_opens_nothing(tmp_path: Path, change: str) -> None:
    key = os.urandom(32)
    (tmp_path / "model.bin").write_bytes(b"weights" * 1000)
    seal(tmp_path / "model.bin", tmp_path / "model.enc", key)
    sealed = bytearray((tmp_path / "model.enc").read_bytes())
    if change == "flip":
        sealed[100] ^= 1
    elif change == "truncate":
        del sealed[-20:]
    else:
        key = os.urandom(32)
    (tmp_path / "model.enc").write_bytes(bytes(sealed))
    with pytest.raises(SealedFileInvalid):
        open_sealed(tmp_path / "model.enc", tmp_path / "out.bin", key)
    assert not (tmp_path / "out.bin").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"model.bin", "model.enc"}  # no partial left
