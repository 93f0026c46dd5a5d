"""swtpm stops in order, so restarts never walk a TPM into dictionary-attack lockout; a power cut
does count, and a dev TPM in lockout can be reset."""

from __future__ import annotations

import pytest

from agent.tpm_device import TpmDevice
from geoattest.dev.swtpm import SwtpmInstance
from geoattest.dev.swtpm.lockout import clear_lockout, lockout_state
from geoattest.errors import TpmCommandFailed
from geoattest.pcr_banks import PcrBank

pytestmark = pytest.mark.swtpm


def use_the_ak(swtpm: SwtpmInstance) -> None:
    """A DA-protected authorisation (the AK's userWithAuth), as every attestation round makes."""
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        device.quote(b"nonce", {PcrBank.SHA256: [0]})


def power_cycles(swtpm: SwtpmInstance, count: int, *, orderly: bool) -> None:
    for _ in range(count):
        use_the_ak(swtpm)
        swtpm.restart(orderly=orderly)


def test_orderly_restarts_leave_the_da_counter_at_zero(swtpm: SwtpmInstance) -> None:
    power_cycles(swtpm, 5, orderly=True)
    state = lockout_state(swtpm.tcti)
    assert (state.failed_tries, state.in_lockout) == (0, False)
    use_the_ak(swtpm)


def test_power_cuts_lock_the_tpm_out_and_a_dev_tpm_is_reset(swtpm: SwtpmInstance) -> None:
    state = lockout_state(swtpm.tcti)
    power_cycles(swtpm, state.max_tries, orderly=False)
    locked = lockout_state(swtpm.tcti)
    assert (locked.failed_tries, locked.in_lockout) == (state.max_tries, True)
    with pytest.raises(TpmCommandFailed, match="lockout"):
        use_the_ak(swtpm)
    clear_lockout(swtpm.tcti)
    assert lockout_state(swtpm.tcti).failed_tries == 0
    use_the_ak(swtpm)


def test_a_plain_stop_is_orderly_too(swtpm: SwtpmInstance) -> None:
    use_the_ak(swtpm)
    swtpm.stop()
    swtpm.start()
    assert lockout_state(swtpm.tcti).failed_tries == 0
