"""Bundles come from outside: names that climb out, repeat or are absolute, oversized or
corrupted archives are refused before anything is verified."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from geoattest.errors import BundleInvalid, BundleUnreadable
from verifier.export import archive
from verifier.export.archive import read_bundle, write_bundle


def test_a_bundle_round_trips_byte_for_byte(tmp_path: Path) -> None:
    files = {"manifest.json": b"{}", "agents/a/records/0000000001.json": bytes(range(256))}
    write_bundle(files, tmp_path / "b.zip")
    assert read_bundle(tmp_path / "b.zip") == files
    again = tmp_path / "c.zip"
    write_bundle(files, again)
    assert again.read_bytes() == (tmp_path / "b.zip").read_bytes()  # no timestamps inside


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs/path", "a/../../b", "a\\b", "a//b", "./a"])
def test_names_that_are_not_plain_relative_paths_are_refused(tmp_path: Path, name: str) -> None:
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as z:
        z.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(BundleUnreadable, match="plain relative path"):
        read_bundle(tmp_path / "b.zip")


def test_a_name_twice_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as z:
        z.writestr("manifest.json", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr("manifest.json", b"2")
    with pytest.raises(BundleUnreadable, match="twice"):
        read_bundle(tmp_path / "b.zip")


def test_an_archive_larger_than_allowed_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_bundle({"big": b"0" * 10_000}, tmp_path / "b.zip")
    monkeypatch.setattr(archive, "MAX_FILE_BYTES", 1000)
    with pytest.raises(BundleUnreadable, match="larger than"):
        read_bundle(tmp_path / "b.zip")


def test_not_a_zip_is_unreadable_and_a_changed_member_names_itself(tmp_path: Path) -> None:
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(BundleUnreadable):
        read_bundle(tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "b.zip", "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("records/1.json", b"A" * 100)
    data = bytearray((tmp_path / "b.zip").read_bytes())
    data[data.index(b"A" * 100) + 50] = ord("B")
    (tmp_path / "b.zip").write_bytes(bytes(data))
    with pytest.raises(BundleInvalid) as caught:
        read_bundle(tmp_path / "b.zip")
    assert caught.value.file == "records/1.json"
