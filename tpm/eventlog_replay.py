"""Replaying a parsed TCG event log into the PCR values it should have produced.

What the verifier compares with the quoted PCRs 0-7: every event extends its PCR in every bank the
log carries, EV_NO_ACTION events extend nothing, and PCR 0 starts from the StartupLocality.
"""

from __future__ import annotations

from collections.abc import Iterable

from geoattest.errors import BootLogInvalid, TpmFormatError
from tpm.constants import Alg, hash_constructor
from tpm.eventlog import (
    EventLog,
    EventType,
)

__all__ = ["initial_pcr_value", "replay_event_log"]


def initial_pcr_value(index: int, size: int, startup_locality: int = 0) -> bytes:
    """A PCR's value after TPM2_Startup: zero, except PCR 0's last byte (the locality)."""
    value = bytearray(size)
    if index == 0:
        value[-1] = startup_locality
    return bytes(value)


def replay_event_log(
    log: EventLog, banks: Iterable[str] | None = None
) -> dict[str, dict[int, bytes]]:
    """The PCR values the log's events produce, per bank (all of the log's banks by default):
    ``{"sha256": {0: …, 1: …}}`` for PCR 0 and every PCR an event extends.

    ``EV_NO_ACTION`` events are skipped; PCR 0 starts at ``log.startup_locality``. Raises
    ``BootLogInvalid`` for a bank the log does not carry or cannot be replayed (no hash).
    """
    wanted = tuple(log.spec.banks if banks is None else banks)
    result: dict[str, dict[int, bytes]] = {}
    for bank in wanted:
        size = log.spec.digest_sizes.get(bank)
        if size is None:
            raise BootLogInvalid(
                f"boot log carries no {bank} digests (it has {', '.join(log.spec.banks)})"
            )
        try:
            new_hash = hash_constructor(Alg[bank.upper()])
        except (KeyError, TpmFormatError):
            raise BootLogInvalid(f"boot log bank {bank} cannot be replayed (no hash)") from None
        zero = bytes(size)
        pcrs = {0: initial_pcr_value(0, size, log.startup_locality)}
        for event in log.events:
            if event.event_type == EventType.EV_NO_ACTION:
                continue
            old = pcrs.get(event.pcr, zero)
            h = new_hash()
            h.update(old)
            h.update(event.digests[bank])
            pcrs[event.pcr] = h.digest()
        result[bank] = dict(sorted(pcrs.items()))
    return result
