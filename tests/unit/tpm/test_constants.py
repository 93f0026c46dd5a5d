"""Algorithm ids and hash helpers."""

from __future__ import annotations

import pytest

from geoattest.errors import TpmFormatError
from tpm.constants import (
    Alg,
    EccCurve,
    ObjectAttributes,
    digest_size,
    hash_algorithm,
    hash_constructor,
    hashlib_name,
    to_alg,
    to_curve,
)


def test_spec_values() -> None:
    assert (Alg.SHA256, Alg.ECC, Alg.RSASSA, Alg.ECDSA, Alg.CFB) == (0xB, 0x23, 0x14, 0x18, 0x43)
    assert int(EccCurve.NIST_P256) == 3
    assert int(ObjectAttributes.RESTRICTED) == 0x10000
    assert int(ObjectAttributes.SIGN_ENCRYPT) == 0x40000


def test_unknown_ids_raise_format_error() -> None:
    with pytest.raises(TpmFormatError, match="unknown TPM_ALG_ID 0x7777 for nameAlg"):
        to_alg(0x7777, "nameAlg")
    with pytest.raises(TpmFormatError, match="TPM_ECC_CURVE 0x0099"):
        to_curve(0x99)
    assert to_alg(0x000B) is Alg.SHA256


@pytest.mark.parametrize(("alg", "size"), [(Alg.SHA1, 20), (Alg.SHA256, 32), (Alg.SHA384, 48)])
def test_hash_helpers_agree(alg: Alg, size: int) -> None:
    assert digest_size(alg) == size
    assert hash_algorithm(alg).digest_size == size
    assert hash_constructor(alg)().digest_size == size
    assert hashlib_name(alg).startswith("sha")


@pytest.mark.parametrize("alg", [Alg.RSA, Alg.NULL, 0x9999])
def test_non_hash_algorithms_rejected(alg: int) -> None:
    for helper in (digest_size, hash_algorithm, hash_constructor, hashlib_name):
        with pytest.raises(TpmFormatError, match="unsupported hash algorithm"):
            helper(alg)
