"""The ESAPI connection under ``agent.tpm_device``: TCTI parsing, error mapping, flushing, handle
and NV access (private to the agent package).

Errors of a command map to ``TpmUnavailable`` (TSS or transport layer: the TPM did not answer) or
``TpmCommandFailed`` (the TPM answered with an error code).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tpm2_pytss.constants import ESYS_TR, TPM2_CAP, TPM2_PT_NV
from tpm2_pytss.ESAPI import ESAPI
from tpm2_pytss.TCTILdr import TCTILdr
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from geoattest.errors import ConfigurationError, TpmCommandFailed, TpmUnavailable

logger = logging.getLogger(__name__)

TCTI_NAMES = frozenset({"swtpm", "device", "mssim", "tabrmd"})
HT_NV_INDEX = 0x01000000
HT_PERSISTENT = 0x81000000


def parse_tcti(tcti: str) -> tuple[str, str | None]:
    """Split ``name:conf``; raises ConfigurationError unless swtpm, device, mssim or tabrmd."""
    name, _, conf = tcti.partition(":")
    if name not in TCTI_NAMES:
        raise ConfigurationError(
            f"unsupported TCTI {tcti!r}: expected one of {sorted(TCTI_NAMES)} "
            "(e.g. swtpm:host=127.0.0.1,port=2321 or device:/dev/tpmrm0)"
        )
    return name, conf or None


def is_tpm_response(error: TSS2_Exception) -> bool:
    """True when the RC came from the TPM itself (layer 0), not from the TSS or its transport."""
    return (int(error.rc) >> 16) & 0xFF == 0


class TpmConnection:
    """An ESAPI context on one TCTI. Raises TpmUnavailable when the TCTI cannot be opened."""

    def __init__(self, tcti: str) -> None:
        name, conf = parse_tcti(tcti)
        self.tcti = tcti
        self._persistent: dict[int, ESYS_TR] = {}
        try:
            self._tcti = TCTILdr(name, conf)
        except TSS2_Exception as e:
            raise TpmUnavailable(f"cannot open TPM TCTI {tcti}: {e}") from e
        try:
            self.esapi = ESAPI(self._tcti)
        except TSS2_Exception as e:
            self._tcti.close()
            raise TpmUnavailable(f"cannot initialise ESAPI on TPM TCTI {tcti}: {e}") from e
        self._closed = False

    def close(self) -> None:
        """Finalize ESAPI, then the TCTI (ESAPI does not close a TCTI it was handed). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._persistent.clear()
        self.esapi.close()
        self._tcti.close()

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """Map TSS2 errors raised inside the block to TpmCommandFailed / TpmUnavailable."""
        if self._closed:
            raise TpmUnavailable(f"{what}: TPM connection {self.tcti} is closed")
        try:
            yield
        except TSS2_Exception as e:
            if is_tpm_response(e):
                raise TpmCommandFailed(
                    f"{what} failed on TPM {self.tcti}: {e} (rc {int(e.rc):#x})", rc=int(e.rc)
                ) from e
            raise TpmUnavailable(f"{what}: TPM {self.tcti} did not answer: {e}") from e

    def flush(self, handle: ESYS_TR) -> None:
        """Flush a transient object or session; a failure is logged, not raised, so that it never
        hides the error already propagating (swtpm has only three transient object slots)."""
        try:
            self.esapi.flush_context(handle)
        except TSS2_Exception as e:
            logger.warning("could not flush TPM handle on %s: %s", self.tcti, e)

    def handles(self, first: int) -> set[int]:
        """Handles of one type present in the TPM (``HT_NV_INDEX``, ``HT_PERSISTENT``).

        Listing first avoids probing absent handles, which the TSS logs as errors on stderr.
        """
        found: set[int] = set()
        more, start = True, first
        with self.calling("GetCapability(handles)"):
            while more:
                more, data = self.esapi.get_capability(TPM2_CAP.HANDLES, start, 64)
                handles = [int(h) for h in data.data.handles]
                found.update(h for h in handles if h >> 24 == first >> 24)
                if not handles:
                    break
                start = max(handles) + 1
        return found

    def _nv_buffer_max(self) -> int:
        with self.calling("GetCapability(NV_BUFFER_MAX)"):
            _, data = self.esapi.get_capability(TPM2_CAP.TPM_PROPERTIES, TPM2_PT_NV.BUFFER_MAX, 1)
        for prop in data.data.tpmProperties:
            if int(prop.property) == TPM2_PT_NV.BUFFER_MAX:
                return int(prop.value)
        return 512

    def nv_read(self, index: int) -> bytes:
        """Whole contents of an NV index (read in NV_BUFFER_MAX chunks, authorised by the index)."""
        chunk = self._nv_buffer_max()
        with self.calling(f"NV_Read({index:#010x})"):
            handle = self.esapi.tr_from_tpmpublic(index)
            try:
                nv_public, _ = self.esapi.nv_read_public(handle)
                size = int(nv_public.nvPublic.dataSize)
                data = b""
                while len(data) < size:
                    part = self.esapi.nv_read(handle, min(chunk, size - len(data)), len(data))
                    data += bytes(part)
            finally:
                self.esapi.tr_close(handle)
        return data

    def persistent_key(self, handle: int) -> ESYS_TR:
        """ESYS handle of a persistent key (cached); ConfigurationError when the handle is empty."""
        cached = self._persistent.get(handle)
        if cached is not None:
            return cached
        if handle not in self.handles(HT_PERSISTENT):
            raise ConfigurationError(
                f"TPM {self.tcti} holds no key at persistent handle {handle:#x}"
            )
        with self.calling(f"ReadPublic({handle:#x})"):
            key = self.esapi.tr_from_tpmpublic(handle)
        self._persistent[handle] = key
        return key

    def make_persistent(self, key: ESYS_TR, handle: int) -> None:
        """EvictControl a loaded transient ``key`` to ``handle`` (the transient stays loaded)."""
        with self.calling(f"EvictControl({handle:#x})"):
            self._persistent[handle] = self.esapi.evict_control(ESYS_TR.OWNER, key, handle)
