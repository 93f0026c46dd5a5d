"""geoattest.trust_files: the directory loader around the pure allowlists constructors."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoattest.errors import ConfigurationError
from geoattest.trust_files import load_pins_file, load_trust_store_dir
from tests.unit.allowlists.conftest import leaf_bytes, store_cert


def test_loads_the_vendor_directory(cert_store_dir: Path) -> None:
    assert len(load_trust_store_dir(cert_store_dir)) == 45


def test_reads_cert_suffixes_only(tmp_path: Path) -> None:
    (tmp_path / "NUVO_2111.PEM").write_bytes(store_cert("NUVO_2111"))
    (tmp_path / "gs.crt").write_bytes(store_cert("GS_TPM_RT"))
    (tmp_path / "README.md").write_text("not a certificate")
    (tmp_path / ".hidden.pem").write_text("not a certificate")
    (tmp_path / "sub.pem").mkdir()
    assert len(load_trust_store_dir(tmp_path)) == 2


def test_der_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "leaf.der").write_bytes(leaf_bytes("nuvoton_ek_leaf_nonDER.der"))
    assert len(load_trust_store_dir(tmp_path)) == 1


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"EK trust store .*: No such file or directory"):
        load_trust_store_dir(tmp_path / "missing")


def test_directory_without_certificates(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(ConfigurationError, match="holds no certificate files"):
        load_trust_store_dir(tmp_path)


def test_bad_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "good.pem").write_bytes(store_cert("GS_TPM_RT"))
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(ConfigurationError, match=r"trust store file 'bad\.pem'"):
        load_trust_store_dir(tmp_path)


def test_pins_file(tmp_path: Path) -> None:
    assert load_pins_file(None) is None
    path = tmp_path / "pins.toml"
    path.write_text(f'[[pin]]\nsha256 = "{"ab" * 32}"\npurchase_order = "PO-1"\n')
    pins = load_pins_file(path)
    assert pins is not None
    assert len(pins) == 1
    path.write_text("[[pin]]\n")
    with pytest.raises(ConfigurationError, match=r"pins\.toml: pins: pin\[0\]"):
        load_pins_file(path)
    with pytest.raises(ConfigurationError, match="EK pins file"):
        load_pins_file(tmp_path / "absent.toml")


@pytest.mark.parametrize("text", ["", "# no pins yet\n", "version = 1\n"])
def test_empty_pins_file_is_refused_not_taken_as_no_pinning(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pins.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match="holds no pins"):
        load_pins_file(path)
