"""IMA emulation on a real (or software) TPM: what the kernel does, minus the kernel.

``ImaEmulator`` appends real-format ``ascii_runtime_measurements`` lines (template ``ima-ng``,
sha256 file digests) to a log file and extends PCR 10 in the sha1 and sha256 banks with the
matching template hashes, like Linux ≥ 5.x with a TPM 2.0 does. Attack helpers break that
correspondence the way an adversary would: extend without logging, rewrite or truncate the log.

ima-ng template data is the d-ng field (``b"sha256:\\0" + digest``) and the n-ng field (the path
and a NUL), each preceded by its length as a little-endian u32; a bank's template hash is that
bank's hash of the template data. The ascii line shows the sha1 one:
``10 <sha1 template hash> ima-ng sha256:<file digest> <path>``.

Entries are encoded by the product's own encoder (``allowlists.ima.template``), so what the
emulator writes is exactly what the verifier parses. Used by the tests and by the local fleet
(``geoattest dev fleet``), since containers and VMs without IMA have no measurement list.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from allowlists.ima.framing import split_entries
from allowlists.ima.template import encode_entry, template_hash
from geoattest.pcr_banks import PcrBank

__all__ = [
    "BOOT_AGGREGATE_PCRS",
    "IMA_PCR",
    "ImaEmulator",
    "ImaEntry",
    "PcrTpm",
    "boot_aggregate_digest",
    "ima_ng_entry",
]

IMA_PCR = 10
BOOT_AGGREGATE_PCRS = tuple(range(10))  # PCRs 0-9 for a TPM 2.0 sha256 bank (Linux >= 5.8)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImaEntry:
    """One measurement: its ascii line (bytes that are not UTF-8 as surrogate escapes), template
    data and per-bank template hashes."""

    line: str
    template_data: bytes
    template_hash_sha1: bytes
    template_hash_sha256: bytes

    @property
    def raw(self) -> bytes:
        """The line as the kernel writes it (without the final newline)."""
        return self.line.encode("utf-8", "surrogateescape")

    @property
    def pcr_digests(self) -> dict[PcrBank, bytes]:
        """What the kernel extends PCR 10 with, per bank."""
        return {PcrBank.SHA1: self.template_hash_sha1, PcrBank.SHA256: self.template_hash_sha256}


def ima_ng_entry(path: str, digest: bytes, *, digest_alg: str = "sha256") -> ImaEntry:
    """The ima-ng entry of a file ``path`` whose ``digest_alg`` digest is ``digest``.

    ``path`` may hold anything a kernel name can (not UTF-8: surrogate escapes; newlines); like
    the kernel, spaces become ``_``. Raises ValueError for an empty path or one with a NUL.
    """
    encoded = encode_entry(path=path, digest=digest, digest_alg=digest_alg, pcr=IMA_PCR)
    return ImaEntry(
        line=encoded.line,
        template_data=encoded.template_data,
        template_hash_sha1=encoded.template_hash_sha1,
        template_hash_sha256=template_hash(encoded.template_data, PcrBank.SHA256),
    )


def boot_aggregate_digest(pcrs: Mapping[int, bytes]) -> bytes:
    """SHA-256 over the sha256 values of PCRs 0-9, in order: the kernel's boot_aggregate."""
    return hashlib.sha256(b"".join(pcrs[i] for i in BOOT_AGGREGATE_PCRS)).digest()


class PcrTpm(Protocol):
    """The TPM calls the emulator makes (``TpmDevice`` and ``SoftwareTpm`` provide them)."""

    def pcr_extend(self, index: int, digests_by_bank: Mapping[PcrBank, bytes]) -> None: ...

    def pcr_read(
        self, pcrs: Mapping[PcrBank, Sequence[int]]
    ) -> dict[PcrBank, dict[int, bytes]]: ...


class ImaEmulator:
    """A kernel IMA stand-in writing ``log_path`` and extending PCR 10 of one TPM.

    ``tpm`` is a TCTI string or an object with ``pcr_extend``/``pcr_read``. With a TCTI, each
    operation opens its own connection and closes it at once: swtpm serves one connection at a
    time, and the agent under test needs it between measurements.
    """

    def __init__(self, tpm: str | PcrTpm, log_path: Path) -> None:
        self._tpm = tpm
        self.log_path = log_path
        self.entries: list[ImaEntry] = []
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()

    # --- honest kernel -------------------------------------------------------------------------

    def boot_aggregate(self) -> ImaEntry:
        """The first entry of a boot: ``boot_aggregate`` over PCRs 0-9 (sha256 bank)."""
        with self._device() as tpm:
            pcrs = tpm.pcr_read({PcrBank.SHA256: list(BOOT_AGGREGATE_PCRS)})[PcrBank.SHA256]
            entry = ima_ng_entry("boot_aggregate", boot_aggregate_digest(pcrs))
            self._record(tpm, entry)
        return entry

    def measure(
        self, path: str, content: bytes | None = None, *, digest: bytes | None = None
    ) -> ImaEntry:
        """Measure a file given its ``content`` or its sha256 ``digest``: log it, extend PCR 10."""
        if (content is None) == (digest is None):
            raise ValueError("give exactly one of content or digest")
        file_digest = digest if digest is not None else hashlib.sha256(content or b"").digest()
        entry = ima_ng_entry(path, file_digest)
        with self._device() as tpm:
            self._record(tpm, entry)
        return entry

    def lines(self) -> list[str]:
        """The log file's entries as they are now (attacks may have changed them), as text with
        surrogate escapes; an entry whose name holds a newline is one item."""
        return [
            entry.decode("utf-8", "surrogateescape")
            for entry in split_entries(self.log_path.read_bytes())
        ]

    def new_boot(self) -> None:
        """Start a new boot's log (after the TPM was reset): empty file, no entries."""
        self.entries.clear()
        self.log_path.write_bytes(b"")

    # --- attacks -------------------------------------------------------------------------------

    def extend_without_log(self, digest: bytes | None = None) -> bytes:
        """Extend PCR 10 (both banks) with a template hash that no log line accounts for."""
        template_data = digest or os.urandom(32)
        extends = {
            PcrBank.SHA1: hashlib.sha1(template_data).digest(),  # noqa: S324 - sha1 PCR bank
            PcrBank.SHA256: hashlib.sha256(template_data).digest(),
        }
        with self._device() as tpm:
            tpm.pcr_extend(IMA_PCR, extends)
        return extends[PcrBank.SHA256]

    def rewrite_line(self, n: int, *, path: str | None = None, digest: bytes | None = None) -> str:
        """Replace log line ``n`` by a self-consistent line for another path/digest (PCR 10 keeps
        the original): what hiding a measured binary looks like. Returns the new line."""
        lines = self.lines()
        original = self.entries[n] if n < len(self.entries) else None
        old_path = original.line.split(" ", 4)[4] if original else f"/rewritten/{n}"
        new = ima_ng_entry(path or old_path, digest or hashlib.sha256(b"benign").digest())
        lines[n] = new.line
        self._write(lines)
        return new.line

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` log lines (PCR 10 still reflects them all)."""
        self._write(self.lines()[:n])

    # --- plumbing ------------------------------------------------------------------------------

    def _record(self, tpm: PcrTpm, entry: ImaEntry) -> None:
        # Like ima_add_template_entry: the entry joins the list, then PCR 10 is extended. A
        # reader can see a line whose extend is not in a quote yet; the verifier's replay has to
        # stop at the prefix that reproduces the quoted PCR 10.
        with self.log_path.open("ab") as log:
            log.write(entry.raw + b"\n")
        self.entries.append(entry)
        tpm.pcr_extend(IMA_PCR, entry.pcr_digests)

    def _write(self, lines: Sequence[str]) -> None:
        data = b"".join(line.encode("utf-8", "surrogateescape") + b"\n" for line in lines)
        self.log_path.write_bytes(data)

    @contextmanager
    def _device(self) -> Iterator[PcrTpm]:
        if not isinstance(self._tpm, str):
            yield self._tpm
            return
        from agent.tpm_device import TpmDevice  # libtss2 only when a real TPM is used

        with TpmDevice(self._tpm) as device:
            yield device
