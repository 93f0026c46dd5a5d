"""An orderly power-down of a swtpm: TPM2_Shutdown(TPM_SU_CLEAR) before the process is stopped.

A TPM that loses power without TPM2_Shutdown after a dictionary-attack-protected authorisation
was used (any AK quote, any ActivateCredential) counts the next Startup as an unorderly one and
increments its DA failure counter. swtpm's default is 3 tries, so the fourth power cut puts it in
lockout (``TPM_RC_LOCKOUT`` for every AK use, 1000 s before one try is forgiven). Every swtpm the
project starts therefore gets a TPM2_Shutdown on its command port before it is signalled.

The command is 12 bytes written straight to swtpm's TCP server port (which speaks the raw TPM
command protocol), so stopping a TPM needs no TSS library.
"""

from __future__ import annotations

import logging
import socket
import struct

logger = logging.getLogger(__name__)

_TPM_ST_NO_SESSIONS = 0x8001
_TPM_CC_SHUTDOWN = 0x00000145
_TPM_SU_CLEAR = 0x0000
_TPM_RC_SUCCESS = 0x000
_TPM_RC_INITIALIZE = 0x100  # not started: nothing to shut down
_RESPONSE_BYTES = 10

SHUTDOWN_COMMAND = struct.pack(">HIIH", _TPM_ST_NO_SESSIONS, 12, _TPM_CC_SHUTDOWN, _TPM_SU_CLEAR)
SHUTDOWN_TIMEOUT_S = 3.0


def shutdown_clear(host: str, port: int, *, timeout: float = SHUTDOWN_TIMEOUT_S) -> bool:
    """Send TPM2_Shutdown(CLEAR) to the swtpm serving ``host:port``; True when the TPM took it.

    swtpm serves one connection at a time, so a client still connected makes this wait up to
    ``timeout``. Never raises: a TPM that cannot be shut down is stopped anyway (a power cut),
    and the reason is logged as a warning because it counts toward DA lockout.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(SHUTDOWN_COMMAND)
            response = _read_exactly(connection, _RESPONSE_BYTES)
    except OSError as e:
        logger.warning(
            "swtpm %s:%s did not take TPM2_Shutdown (%s); stopping it anyway, which counts as an "
            "unorderly shutdown",
            host,
            port,
            e,
        )
        return False
    _tag, _size, rc = struct.unpack(">HII", response)
    if rc in (_TPM_RC_SUCCESS, _TPM_RC_INITIALIZE):
        logger.debug("swtpm %s:%s shut down (rc %#x)", host, port, rc)
        return True
    logger.warning("swtpm %s:%s refused TPM2_Shutdown(CLEAR) with rc %#x", host, port, rc)
    return False


def _read_exactly(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data
