"""Bundles as zip files: written in a fixed order with fixed timestamps, read with bounds.

Reading refuses (``BundleUnreadable``) what is not a zip archive, an archive of more than
``MAX_FILES`` files or ``MAX_BYTES`` uncompressed, a file larger than ``MAX_FILE_BYTES``, names
that are absolute, climb out (``..``), use backslashes or repeat: the bundle comes from
outside, and nothing in it is written anywhere. A file whose CRC-32 fails was changed inside
the archive: that is a ``BundleInvalid`` naming it.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from geoattest.errors import BundleInvalid, BundleUnreadable

MAX_FILES = 2_000_000
MAX_BYTES = 8 << 30
MAX_FILE_BYTES = 256 << 20
_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_bundle(files: Mapping[str, bytes], path: Path) -> int:
    """Write ``files`` as a deflated zip at ``path`` (replaced atomically); returns its size."""
    temporary = path.with_name(f".{path.name}.partial")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, files[name])
    temporary.replace(path)
    return path.stat().st_size


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every file of the bundle at ``path``, by name (see the module docstring)."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise BundleUnreadable(f"{path}: not a readable zip archive ({e})") from e
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_FILES:
            raise BundleUnreadable(f"{path}: {len(infos)} files, more than {MAX_FILES}")
        if sum(info.file_size for info in infos) > MAX_BYTES:
            raise BundleUnreadable(f"{path}: more than {MAX_BYTES} bytes uncompressed")
        files: dict[str, bytes] = {}
        for info in infos:
            if info.is_dir():
                continue
            name = _safe_name(info.filename)
            if name in files:
                raise BundleUnreadable(f"{path}: {name!r} appears twice")
            if info.file_size > MAX_FILE_BYTES:
                raise BundleUnreadable(f"{path}: {name} is larger than {MAX_FILE_BYTES} bytes")
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_FILE_BYTES + 1)
            except zipfile.BadZipFile as e:  # its CRC-32 fails: the file's bytes were changed
                raise BundleInvalid(f"its bytes changed in the archive ({e})", file=name) from e
            except (OSError, EOFError, zlib.error) as e:
                raise BundleUnreadable(f"{path}: {name} cannot be read ({e})") from e
            if len(data) > info.file_size:
                raise BundleUnreadable(f"{path}: {name} is larger than the archive says")
            files[name] = data
        return files


def _safe_name(name: str) -> str:
    pure = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or pure.is_absolute()
        or any(part in ("..", ".", "") for part in name.split("/"))
    ):
        raise BundleUnreadable(f"bundle file name {name[:100]!r} is not a plain relative path")
    return name
