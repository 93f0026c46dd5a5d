"""Dictionary-attack state of a development TPM, and its reset.

A TPM counts failed authorisations, and every unorderly shutdown after a DA-protected key was
used counts as one. At ``max_tries`` the TPM is in lockout: every AK use (quote,
ActivateCredential) fails with ``TPM_RC_LOCKOUT`` until ``recovery_seconds`` pass per try, or
until TPM2_DictionaryAttackLockReset is authorised with the lockout hierarchy's auth.

Only for TPMs manufactured by ``SwtpmInstance.setup`` (empty lockout auth, dev state): a
production TPM's lockout auth belongs to its owner and a lockout there is a signal, not noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpm2_pytss.constants import ESYS_TR, TPM2_CAP, TPM2_PT, TPMA_PERMANENT
from tpm2_pytss.ESAPI import ESAPI
from tpm2_pytss.TCTILdr import TCTILdr
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from geoattest.errors import ConfigurationError

_PROPERTIES = (
    TPM2_PT.PERMANENT,
    TPM2_PT.LOCKOUT_COUNTER,
    TPM2_PT.MAX_AUTH_FAIL,
    TPM2_PT.LOCKOUT_INTERVAL,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutState:
    """The TPM's DA counters (TPM_PT_LOCKOUT_COUNTER, TPM_PT_MAX_AUTH_FAIL, ...)."""

    failed_tries: int
    max_tries: int
    in_lockout: bool
    recovery_seconds: int


def _esapi(tcti: str) -> tuple[TCTILdr, ESAPI]:
    name, _, conf = tcti.partition(":")
    try:
        loader = TCTILdr(name, conf or None)
    except TSS2_Exception as e:
        raise ConfigurationError(f"cannot open TPM TCTI {tcti}: {e}") from e
    try:
        return loader, ESAPI(loader)
    except TSS2_Exception as e:
        loader.close()
        raise ConfigurationError(f"cannot initialise ESAPI on {tcti}: {e}") from e


def lockout_state(tcti: str) -> LockoutState:
    """Read the DA counters of the TPM at ``tcti``; raises ConfigurationError if it cannot."""
    loader, esapi = _esapi(tcti)
    try:
        values: dict[int, int] = {}
        for prop in _PROPERTIES:
            _more, data = esapi.get_capability(TPM2_CAP.TPM_PROPERTIES, prop, 1)
            for item in data.data.tpmProperties:
                values[int(item.property)] = int(item.value)
    except TSS2_Exception as e:
        raise ConfigurationError(f"cannot read the DA state of {tcti}: {e}") from e
    finally:
        esapi.close()
        loader.close()
    return LockoutState(
        failed_tries=values[TPM2_PT.LOCKOUT_COUNTER],
        max_tries=values[TPM2_PT.MAX_AUTH_FAIL],
        in_lockout=bool(values[TPM2_PT.PERMANENT] & TPMA_PERMANENT.INLOCKOUT),
        recovery_seconds=values[TPM2_PT.LOCKOUT_INTERVAL],
    )


def clear_lockout(tcti: str) -> None:
    """TPM2_DictionaryAttackLockReset with the (empty) lockout auth of a dev TPM.

    Raises ConfigurationError when the TPM refuses: its lockout auth is set, or the lockout
    hierarchy is itself locked after a wrong lockout auth.
    """
    loader, esapi = _esapi(tcti)
    try:
        esapi.dictionary_attack_lock_reset(ESYS_TR.LOCKOUT)
    except TSS2_Exception as e:
        raise ConfigurationError(
            f"the TPM at {tcti} refused to reset its DA lockout ({e}); it is not a dev TPM with "
            "an empty lockout auth, or wait for its lockout recovery time"
        ) from e
    finally:
        esapi.close()
        loader.close()
