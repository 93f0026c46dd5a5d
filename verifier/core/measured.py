"""What a passed round's IMA replay measured: executables by SHA-256, for "approved runtime". Pure.

A workload's token may say its executable is part of the host's approved runtime only when this
boot's verified IMA log measured a file with the same SHA-256. ``measured_files`` lists the
files a passed round's consumed IMA lines measured (``ima-ng`` and ``ima-sig`` entries with a
sha256 file digest); violations (whose path nothing authenticates), buffers and other digest
algorithms are left out. Whether a measured file is *approved* is decided when a token is issued,
against the policy in force then (``approval``): its digest listed for its path, or only its
path excluded (weaker), or neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from allowlists.ima.policy import RuntimePolicy
from allowlists.ima.template import parse_entry
from geoattest.errors import ImaLogInvalid

__all__ = ["MeasuredFile", "approval", "measured_files"]

_FILE_TEMPLATES = frozenset({"ima-ng", "ima-sig"})
_ZERO_HASH = "0" * 40


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasuredFile:
    sha256: bytes
    path: str  # as the kernel printed it (bytes that are not UTF-8 as surrogate escapes)


def measured_files(lines: Sequence[str]) -> list[MeasuredFile]:
    """The sha256-measured files of ``lines`` (entries a round verified), first path first."""
    found: dict[bytes, MeasuredFile] = {}
    for line in lines:
        head = line.split(" ", 4)
        if len(head) == 5 and head[2] == "ima-ng" and head[1] != _ZERO_HASH:
            alg, _, hexd = head[3].partition(":")
            path = head[4]
        else:
            try:
                entry = parse_entry(line, verify=False)
            except ImaLogInvalid:
                continue  # a round that passed consumed no such line; never claim from one
            if entry.template not in _FILE_TEMPLATES or entry.is_violation:
                continue
            alg, hexd, path = entry.digest_alg, entry.digest.hex(), entry.path
        if alg != "sha256" or len(hexd) != 64:
            continue
        try:
            digest = bytes.fromhex(hexd)
        except ValueError:
            continue
        found.setdefault(digest, MeasuredFile(sha256=digest, path=path))
    return list(found.values())


def approval(measured: MeasuredFile, policy: RuntimePolicy | None) -> str | None:
    """``"allowlisted"`` when ``policy`` lists the file's digest for its path, ``"excluded"``
    when it only excludes the path, None when it does neither (or there is no runtime policy)."""
    if policy is None:
        return None
    listed = policy.digests.get(measured.path)
    if listed is not None and f"sha256:{measured.sha256.hex()}" in listed:
        return "allowlisted"
    if policy.is_excluded(measured.path):
        return "excluded"
    return None
