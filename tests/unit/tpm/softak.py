"""A software attestation key that emits genuine-format TPM2_Quote / TPM2_Certify output.

Tests use it as the adversary's and the honest agent's TPM: it marshals TPMS_ATTEST with the
package's encoder and signs it with a cryptography key, so a test can tamper with any field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tpm import (
    Alg,
    Attest,
    CertifyInfo,
    ClockInfo,
    PcrSelection,
    PcrValues,
    QuoteInfo,
    St,
    TpmPublic,
    TpmSignature,
    ak_public,
    encode_tpms_attest,
    encode_tpmt_signature,
    pcr_digest,
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(kw_only=True)
class SoftwareAk:
    """A signing key plus the TPM state a quote reports (clock, counters, firmware)."""

    key: PrivateKey
    public: TpmPublic
    clock: ClockInfo = field(
        default_factory=lambda: ClockInfo(clock=1000, reset_count=1, restart_count=0, safe=True)
    )
    firmware_version: int = 0x2023_0101_0000_0001
    sig_alg: Alg | None = None  # None: the key's own scheme

    @classmethod
    def ecc(cls) -> SoftwareAk:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(key=key, public=ak_public(key.public_key()))

    @classmethod
    def rsa(cls) -> SoftwareAk:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key=key, public=ak_public(key.public_key()))

    def sign(self, message: bytes) -> bytes:
        """A marshalled TPMT_SIGNATURE over ``message`` (SHA-256)."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            der = self.key.sign(message, ec.ECDSA(hashes.SHA256()))
            return encode_tpmt_signature(TpmSignature.ecdsa_from_der(der))
        if self.sig_alg is Alg.RSAPSS:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            raw = self.key.sign(message, pss, hashes.SHA256())
        else:
            raw = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        alg = self.sig_alg or Alg.RSASSA
        return encode_tpmt_signature(TpmSignature(sig_alg=alg, hash_alg=Alg.SHA256, rsa=raw))

    def quote_attest(
        self,
        nonce: bytes,
        pcr_values: PcrValues,
        *,
        selection: PcrSelection | None = None,
    ) -> Attest:
        """The TPMS_ATTEST a TPM would produce quoting ``pcr_values`` with ``nonce``."""
        sel = selection or PcrSelection.of_values(pcr_values)
        return Attest(
            type=St.ATTEST_QUOTE,
            qualified_signer=self.public.name,
            extra_data=nonce,
            clock_info=self.clock,
            firmware_version=self.firmware_version,
            attested=QuoteInfo(
                pcr_selection=sel, pcr_digest=pcr_digest(pcr_values, sel, Alg.SHA256)
            ),
        )

    def quote(self, nonce: bytes, pcr_values: PcrValues) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST bytes, TPMT_SIGNATURE bytes) of a quote."""
        attest = encode_tpms_attest(self.quote_attest(nonce, pcr_values))
        return attest, self.sign(attest)

    def certify(self, obj: TpmPublic, qualifying_data: bytes) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST bytes, TPMT_SIGNATURE bytes) of TPM2_Certify over ``obj``."""
        attest = encode_tpms_attest(
            Attest(
                type=St.ATTEST_CERTIFY,
                qualified_signer=self.public.name,
                extra_data=qualifying_data,
                clock_info=self.clock,
                firmware_version=self.firmware_version,
                attested=CertifyInfo(name=obj.name, qualified_name=obj.name),
            )
        )
        return attest, self.sign(attest)
