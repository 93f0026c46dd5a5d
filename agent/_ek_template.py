"""TCG default EK templates and the agent's key templates (private to ``agent.tpm_device``).

EK templates follow the TCG EK Credential Profile for TPM Family 2.0 (rev. 2.5, appendix B):
low range L-1 (RSA-2048) and L-2 (ECC P-256), high range H-1 (RSA-2048), H-2 (ECC P-256) and
H-3 (ECC P-384). Each profile names the NV index of its EK certificate; CreatePrimary with the
template in the endorsement hierarchy recreates the key the certificate certifies.
swtpm 0.7 provisions L-1 and H-3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPMA_OBJECT
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
    TPMS_ECC_PARMS,
    TPMS_ECC_POINT,
    TPMS_RSA_PARMS,
    TPMS_SCHEME_HASH,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_RSA_SCHEME,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_PUBLIC_ID,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)

KeyAlgorithm = Literal["ecc", "rsa"]

# PolicySecret(TPM_RH_ENDORSEMENT), SHA-256: the authPolicy of every low-range EK template.
EK_POLICY_LOW = bytes.fromhex("837197674484B3F81A90CC8D46A5D724FD52D76E06520B64F2A1DA1B331469AA")
# PolicyB of the high-range templates (PolicyOR of PolicySecret(ENDORSEMENT) and an NV policy).
EK_POLICY_B_SHA256 = bytes.fromhex(
    "CA3D0A99A2B93906F7A3342414EFCFB3A385D44CD1FD459089D19B5071C0B7A0"
)
EK_POLICY_B_SHA384 = bytes.fromhex(
    "B26E7D28D11A50BC53D882BCF5FD3A1A074148BB35D3B4E4CB1C0AD9BDE419CA"
    "CB47BA09699646150F9FC000F3F80E12"
)

_LOW_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.ADMINWITHPOLICY
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
# High-range EKs also allow USER role with their (empty) authValue.
_HIGH_ATTRIBUTES = _LOW_ATTRIBUTES | TPMA_OBJECT.USERWITHAUTH


@dataclass(frozen=True, slots=True)
class EkProfile:
    """One TCG EK template and the NV indices that belong to it."""

    name: str
    algorithm: KeyAlgorithm
    cert_index: int
    low_range: bool

    @property
    def nonce_index(self) -> int | None:
        """NV index of the optional template nonce (low range only)."""
        return self.cert_index + 1 if self.low_range else None

    @property
    def template_index(self) -> int:
        """NV index of an optional vendor template that replaces the default one."""
        return self.cert_index + 2 if self.low_range else self.cert_index + 1

    def template(self) -> TPM2B_PUBLIC:
        """A fresh TPM2B_PUBLIC holding this profile's default template."""
        return _TEMPLATES[self.name]()


EK_RSA2048_LOW = EkProfile("L-1", "rsa", 0x01C00002, low_range=True)
EK_ECC256_LOW = EkProfile("L-2", "ecc", 0x01C0000A, low_range=True)
EK_RSA2048_HIGH = EkProfile("H-1", "rsa", 0x01C00012, low_range=False)
EK_ECC256_HIGH = EkProfile("H-2", "ecc", 0x01C00014, low_range=False)
EK_ECC384_HIGH = EkProfile("H-3", "ecc", 0x01C00016, low_range=False)

# Preference order per algorithm: the first profile whose certificate is in NV wins.
EK_PROFILES: dict[KeyAlgorithm, tuple[EkProfile, ...]] = {
    "ecc": (EK_ECC256_LOW, EK_ECC256_HIGH, EK_ECC384_HIGH),
    "rsa": (EK_RSA2048_LOW, EK_RSA2048_HIGH),
}


def _aes_cfb(bits: int) -> TPMT_SYM_DEF_OBJECT:
    return TPMT_SYM_DEF_OBJECT(
        algorithm=TPM2_ALG.AES,
        keyBits=TPMU_SYM_KEY_BITS(aes=bits),
        mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
    )


def _rsa_ek(*, high: bool) -> TPM2B_PUBLIC:
    area = TPMT_PUBLIC(
        type=TPM2_ALG.RSA,
        nameAlg=TPM2_ALG.SHA256,
        objectAttributes=_HIGH_ATTRIBUTES if high else _LOW_ATTRIBUTES,
        authPolicy=EK_POLICY_B_SHA256 if high else EK_POLICY_LOW,
        parameters=TPMU_PUBLIC_PARMS(
            rsaDetail=TPMS_RSA_PARMS(
                symmetric=_aes_cfb(128),
                scheme=TPMT_RSA_SCHEME(scheme=TPM2_ALG.NULL),
                keyBits=2048,
                exponent=0,
            )
        ),
    )
    if not high:  # the low-range template fills unique with zeros; high range leaves it empty
        area.unique = TPMU_PUBLIC_ID(rsa=b"\x00" * 256)
    return TPM2B_PUBLIC(publicArea=area)


def _ecc_ek(*, curve: int, high: bool) -> TPM2B_PUBLIC:
    p384 = curve == TPM2_ECC.NIST_P384
    area = TPMT_PUBLIC(
        type=TPM2_ALG.ECC,
        nameAlg=TPM2_ALG.SHA384 if p384 else TPM2_ALG.SHA256,
        objectAttributes=_HIGH_ATTRIBUTES if high else _LOW_ATTRIBUTES,
        authPolicy=(EK_POLICY_B_SHA384 if p384 else EK_POLICY_B_SHA256) if high else EK_POLICY_LOW,
        parameters=TPMU_PUBLIC_PARMS(
            eccDetail=TPMS_ECC_PARMS(
                symmetric=_aes_cfb(256 if p384 else 128),
                scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL),
                curveID=curve,
                kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
            )
        ),
    )
    if not high:
        area.unique = TPMU_PUBLIC_ID(ecc=TPMS_ECC_POINT(x=b"\x00" * 32, y=b"\x00" * 32))
    return TPM2B_PUBLIC(publicArea=area)


_TEMPLATES = {
    "L-1": lambda: _rsa_ek(high=False),
    "L-2": lambda: _ecc_ek(curve=TPM2_ECC.NIST_P256, high=False),
    "H-1": lambda: _rsa_ek(high=True),
    "H-2": lambda: _ecc_ek(curve=TPM2_ECC.NIST_P256, high=True),
    "H-3": lambda: _ecc_ek(curve=TPM2_ECC.NIST_P384, high=True),
}


def apply_nonce(template: TPM2B_PUBLIC, nonce: bytes) -> None:
    """Put an EK template nonce (from NV) into ``unique``, zero-padded (TCG EK profile 2.2.1.5)."""
    area = template.publicArea
    if area.type == TPM2_ALG.RSA:
        area.unique.rsa = nonce.ljust(256, b"\x00")
    else:
        area.unique.ecc.x = nonce.ljust(32, b"\x00")
        area.unique.ecc.y = b"\x00" * 32


# --- agent keys -----------------------------------------------------------------------------------

AK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)


def signing_key_template(
    algorithm: KeyAlgorithm = "ecc",
    *,
    restricted: bool = True,
    fixed_tpm: bool = True,
) -> TPM2B_PUBLIC:
    """Template of a signing key: ECC P-256 ECDSA-SHA256 or RSA-2048 RSASSA-SHA256.

    Defaults give an attestation key (restricted, fixedTPM, fixedParent). ``restricted=False``
    gives a general signing key (the location key); ``fixed_tpm=False`` also clears fixedParent
    (the TPM requires fixedParent with fixedTPM) and exists for negative tests: a key that could be
    duplicated off the TPM, which verifiers must refuse as an AK.
    """
    attributes = AK_ATTRIBUTES
    if not restricted:
        attributes &= ~TPMA_OBJECT.RESTRICTED
    if not fixed_tpm:
        attributes &= ~(TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT)
    sha256 = TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256)
    if algorithm == "ecc":
        parameters = TPMU_PUBLIC_PARMS(
            eccDetail=TPMS_ECC_PARMS(
                symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
                scheme=TPMT_ECC_SCHEME(
                    scheme=TPM2_ALG.ECDSA, details=TPMU_ASYM_SCHEME(ecdsa=sha256)
                ),
                curveID=TPM2_ECC.NIST_P256,
                kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
            )
        )
        key_type = TPM2_ALG.ECC
    else:
        parameters = TPMU_PUBLIC_PARMS(
            rsaDetail=TPMS_RSA_PARMS(
                symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
                scheme=TPMT_RSA_SCHEME(
                    scheme=TPM2_ALG.RSASSA, details=TPMU_ASYM_SCHEME(rsassa=sha256)
                ),
                keyBits=2048,
                exponent=0,
            )
        )
        key_type = TPM2_ALG.RSA
    return TPM2B_PUBLIC(
        publicArea=TPMT_PUBLIC(
            type=key_type,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=attributes,
            parameters=parameters,
        )
    )
