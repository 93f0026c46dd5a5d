"""A TPM in software: EK and AK keys, PCR banks, clock and counters, genuine-format output.

``SoftwareTpm`` offers the calls the agent makes on ``agent.tpm_device.TpmDevice`` (EK
certificate, EK public, AK, ActivateCredential, quote, PCR extend/read, and the location key:
create, TPM2_Certify by the AK, TPM2_Sign of a digest), so the agent's own enrolment, evidence
and location code runs on it unchanged. Quotes are TPMS_ATTEST marshalled with
``tpm.encode_tpms_attest`` and ECDSA P-256 TPMT_SIGNATUREs; a verifier cannot tell them from a
real TPM's by format. Simulators (``tests.support.agent_simulator``) tamper on top of it.

``SoftwareAk`` is the attestation key alone (ECC or RSA, RSASSA or RSAPSS): the unit tests of
``tpm`` and ``verifier.core`` build quotes and certifications with it and tamper with any field.

``software_activate`` is TPM2_ActivateCredential written with cryptography's KBKDF and ConcatKDF,
independently of ``tpm.credential`` (the same reference model as ``tests/unit/tpm``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

import tpm
from agent.tpm_device import DEFAULT_AK_HANDLE, DEFAULT_LOCATION_KEY_HANDLE, TpmQuote
from geoattest.errors import ConfigurationError, CredentialActivationRefused, MalformedRequest
from geoattest.pcr_banks import PcrBank
from tests.support.software_pki import SoftwareCa
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
)

try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - cryptography < 47
    from cryptography.hazmat.primitives.ciphers.modes import CFB

__all__ = ["ACTIVE_BANKS", "EkPrivate", "SoftwareAk", "SoftwareTpm", "software_activate"]

EkPrivate = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
ACTIVE_BANKS = (PcrBank.SHA1, PcrBank.SHA256)  # as a stock swtpm; others are "not active"
PCR_COUNT = 24
MAX_NONCE_BYTES = 64


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
        return cls(key=key, public=tpm.ak_public(key.public_key()))

    @classmethod
    def rsa(cls) -> SoftwareAk:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key=key, public=tpm.ak_public(key.public_key()))

    def sign(self, message: bytes) -> bytes:
        """A marshalled TPMT_SIGNATURE over ``message`` (SHA-256)."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            der = self.key.sign(message, ec.ECDSA(hashes.SHA256()))
            return tpm.encode_tpmt_signature(TpmSignature.ecdsa_from_der(der))
        if self.sig_alg is Alg.RSAPSS:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            raw = self.key.sign(message, pss, hashes.SHA256())
        else:
            raw = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        alg = self.sig_alg or Alg.RSASSA
        return tpm.encode_tpmt_signature(TpmSignature(sig_alg=alg, hash_alg=Alg.SHA256, rsa=raw))

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
                pcr_selection=sel, pcr_digest=tpm.pcr_digest(pcr_values, sel, Alg.SHA256)
            ),
        )

    def quote(self, nonce: bytes, pcr_values: PcrValues) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST bytes, TPMT_SIGNATURE bytes) of a quote."""
        attest = tpm.encode_tpms_attest(self.quote_attest(nonce, pcr_values))
        return attest, self.sign(attest)

    def certify(self, obj: TpmPublic, qualifying_data: bytes) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST bytes, TPMT_SIGNATURE bytes) of TPM2_Certify over ``obj``."""
        attest = tpm.encode_tpms_attest(
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


class SoftwareTpm:
    """One software TPM with an ECC P-256 EK (certificate from ``ca``) and an ECC P-256 AK.

    ``pcrs[bank][index]`` holds the PCR values (sha1 and sha256 banks; assign to tamper).
    ``sign_with`` replaces the AK for signing quotes (another TPM's key, an attacker's key).
    The clock follows real time in milliseconds from ``clock_start``; ``reboot`` is a TPM Reset.
    ``location_keys`` maps persistent handles to location keys (``create_location_key``).
    """

    def __init__(self, ca: SoftwareCa, *, clock_start: int = 1_000_000) -> None:
        self.ek_key = ec.generate_private_key(ec.SECP256R1())
        self.ek = tpm.ek_public(self.ek_key.public_key())
        self.ek_certificate = ca.issue_ek_certificate(self.ek_key.public_key())
        self.ak_key = ec.generate_private_key(ec.SECP256R1())
        self.ak = tpm.ak_public(self.ak_key.public_key())
        self.sign_with: ec.EllipticCurvePrivateKey | None = None
        self.location_keys: dict[int, tuple[ec.EllipticCurvePrivateKey, TpmPublic]] = {}
        self.pcrs: dict[PcrBank, list[bytes]] = _zero_pcrs()
        self.reset_count = 0
        self.restart_count = 0
        self.firmware_version = 0x2024_0001_0000_0001
        self._clock_base = clock_start
        self._started = time.monotonic()
        self._last_clock = 0

    # --- identity and enrolment (agent.enrolment.EnrollableTpm) ---------------------------------

    def read_ek_certificate(self) -> bytes:
        return self.ek_certificate

    def ek_public(self) -> bytes:
        return tpm.encode_tpm2b_public(self.ek)

    def ensure_ak(
        self, handle: int = DEFAULT_AK_HANDLE, alg: Literal["ecc", "rsa"] = "ecc"
    ) -> bytes:
        if alg != "ecc":
            raise ConfigurationError("the software TPM has an ECC AK only")
        return tpm.encode_tpm2b_public(self.ak)

    def activate_credential(
        self, credential_blob: bytes, encrypted_secret: bytes, *, ak_handle: int = DEFAULT_AK_HANDLE
    ) -> bytes:
        try:
            return software_activate(
                self.ek_key, self.ek, self.ak.name, credential_blob, encrypted_secret
            )
        except ValueError as e:
            raise CredentialActivationRefused(f"software TPM refused the credential: {e}") from e

    # --- PCRs, clock and quotes (agent.evidence.QuotingTpm) -------------------------------------

    def pcr_extend(self, index: int, digests_by_bank: Mapping[PcrBank, bytes]) -> None:
        for bank, digest in digests_by_bank.items():
            if len(digest) != bank.digest_size:
                raise ValueError(f"{bank} digest must be {bank.digest_size} bytes")
            old = self.pcrs[bank][index]
            self.pcrs[bank][index] = hashlib.new(bank, old + digest).digest()

    def pcr_read(self, pcrs: Mapping[PcrBank, Sequence[int]]) -> dict[PcrBank, dict[int, bytes]]:
        try:
            return {
                bank: {i: self.pcrs[bank][i] for i in sorted(set(idx))}
                for bank, idx in pcrs.items()
            }
        except KeyError as e:
            raise ConfigurationError(f"PCR bank {e} is not active on the software TPM") from e

    def clock_info(self) -> ClockInfo:
        """Clock in ms (never going back), resetCount, restartCount, safe."""
        now = self._clock_base + int((time.monotonic() - self._started) * 1000)
        self._last_clock = max(now, self._last_clock)
        return ClockInfo(
            clock=self._last_clock,
            reset_count=self.reset_count,
            restart_count=self.restart_count,
            safe=True,
        )

    def quote(
        self,
        nonce: bytes,
        pcrs: Mapping[PcrBank, Sequence[int]],
        *,
        ak_handle: int = DEFAULT_AK_HANDLE,
    ) -> TpmQuote:
        """TPM2_Quote in software: (TPMS_ATTEST, TPMT_SIGNATURE, the PCR values quoted)."""
        if len(nonce) > MAX_NONCE_BYTES:
            raise MalformedRequest(f"nonce is {len(nonce)} bytes; a TPM quote takes at most 64")
        values = self.pcr_read(pcrs)
        by_alg: PcrValues = {tpm.bank_alg(bank): v for bank, v in values.items()}
        ak = self._signing_ak()
        attest = tpm.encode_tpms_attest(ak.quote_attest(nonce, by_alg))
        return TpmQuote(attest, ak.sign(attest), values)

    def sign(self, message: bytes) -> bytes:
        """ECDSA-SHA256 TPMT_SIGNATURE over ``message`` with the AK (or ``sign_with``)."""
        return self._signing_ak().sign(message)

    def _signing_ak(self) -> SoftwareAk:
        """The AK as it stands now: its name, the key that signs (``sign_with`` when set, the
        AK's own otherwise), the running clock and the firmware version."""
        return SoftwareAk(
            key=self.sign_with or self.ak_key,
            public=self.ak,
            clock=self.clock_info(),
            firmware_version=self.firmware_version,
        )

    # --- location key (agent.location.LocationKeyTpm, DigestSigner) -----------------------------

    def create_location_key(self, handle: int = DEFAULT_LOCATION_KEY_HANDLE) -> bytes:
        """TPM2B_PUBLIC of the ECC P-256 location key at ``handle``, created if absent."""
        if handle not in self.location_keys:
            key = ec.generate_private_key(ec.SECP256R1())
            self.location_keys[handle] = (key, tpm.location_key_public(key.public_key()))
        return tpm.encode_tpm2b_public(self.location_keys[handle][1])

    def read_public(self, handle: int) -> bytes:
        """TPM2B_PUBLIC of the AK (at any AK handle) or of a location key."""
        if handle in self.location_keys:
            return tpm.encode_tpm2b_public(self.location_keys[handle][1])
        return tpm.encode_tpm2b_public(self.ak)

    def certify(
        self, key_handle: int, qualifying_data: bytes, *, ak_handle: int = DEFAULT_AK_HANDLE
    ) -> tuple[bytes, bytes]:
        """TPM2_Certify of a location key by the AK: (TPMS_ATTEST, TPMT_SIGNATURE)."""
        if len(qualifying_data) > MAX_NONCE_BYTES:
            raise MalformedRequest("qualifying data is longer than 64 bytes")
        name = self._location_key(key_handle)[1].name
        attest = tpm.encode_tpms_attest(
            Attest(
                type=St.ATTEST_CERTIFY,
                qualified_signer=self.ak.name,
                extra_data=qualifying_data,
                clock_info=self.clock_info(),
                firmware_version=self.firmware_version,
                attested=CertifyInfo(
                    name=name,
                    qualified_name=name[:2] + hashlib.sha256(self.ek.name + name).digest(),
                ),
            )
        )
        return attest, self.sign(attest)

    def sign_digest(self, key_handle: int, digest: bytes) -> bytes:
        """TPM2_Sign of a SHA-256 digest with a location key: ECDSA TPMT_SIGNATURE."""
        if len(digest) != PcrBank.SHA256.digest_size:
            raise ValueError("sign_digest takes a 32-byte SHA-256 digest")
        key = self._location_key(key_handle)[0]
        der = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return tpm.encode_tpmt_signature(TpmSignature.ecdsa_from_der(der))

    def _location_key(self, handle: int) -> tuple[ec.EllipticCurvePrivateKey, TpmPublic]:
        try:
            return self.location_keys[handle]
        except KeyError:
            raise ConfigurationError(f"no location key at handle {handle:#x}") from None

    def jump_clock(self, milliseconds: int) -> None:
        """Move the TPM clock by ``milliseconds``: forward as ``TPM2_ClockSet`` may, or back
        (negative; never reported back by ``clock_info`` within a boot, as a real TPM never
        does: it stays at the highest value until real time catches up)."""
        self._clock_base += milliseconds

    def reboot(self) -> None:
        """TPM Reset (platform reboot): PCRs cleared, resetCount up, restartCount 0."""
        self.pcrs = _zero_pcrs()
        self.reset_count += 1
        self.restart_count = 0

    def close(self) -> None:
        """Nothing to release (present for ``agent.evidence.QuotingTpm``)."""


def _zero_pcrs() -> dict[PcrBank, list[bytes]]:
    return {bank: [bytes(bank.digest_size)] * PCR_COUNT for bank in ACTIVE_BANKS}


def split_tpm2b(data: bytes) -> tuple[bytes, bytes]:
    size = int.from_bytes(data[:2], "big")
    if len(data) < 2 + size:
        raise ValueError("truncated TPM2B")
    return data[2 : 2 + size], data[2 + size :]


def kbkdf(seed: bytes, label: bytes, context: bytes, length: int) -> bytes:
    return KBKDFHMAC(
        algorithm=hashes.SHA256(),
        mode=Mode.CounterMode,
        length=length,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context,
        fixed=None,
    ).derive(seed)


def software_activate(
    ek_key: EkPrivate, ek: TpmPublic, name: bytes, blob: bytes, encrypted_secret: bytes
) -> bytes:
    """TPM2_ActivateCredential in software (SHA-256 EK nameAlg, AES-128-CFB) for RSA or ECC EKs.

    ``blob`` is a marshalled TPM2B_ID_OBJECT, ``encrypted_secret`` a TPM2B_ENCRYPTED_SECRET,
    ``name`` the TPM name of the object the credential is bound to. Raises ValueError when the
    structures are malformed or the integrity HMAC does not verify (wrong EK or name).
    """
    id_object, rest = split_tpm2b(blob)
    if rest:
        raise ValueError("trailing bytes after the TPM2B_ID_OBJECT")
    integrity, enc_identity = split_tpm2b(id_object)
    secret, rest = split_tpm2b(encrypted_secret)
    if rest:
        raise ValueError("trailing bytes after the TPM2B_ENCRYPTED_SECRET")
    if isinstance(ek_key, rsa.RSAPrivateKey):
        oaep = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"IDENTITY\0"
        )
        seed = ek_key.decrypt(secret, oaep)
    else:
        x, rest = split_tpm2b(secret)
        y, rest = split_tpm2b(rest)
        if rest or ek.ecc_x is None:
            raise ValueError("malformed ECC encrypted secret")
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ek_key.curve, b"\x04" + x + y)
        z = ek_key.exchange(ec.ECDH(), peer)
        seed = ConcatKDFHash(hashes.SHA256(), 32, otherinfo=b"IDENTITY\0" + x + ek.ecc_x).derive(z)
    hmac_key = kbkdf(seed, b"INTEGRITY", b"", 32)
    expected = hmac.new(hmac_key, enc_identity + name, "sha256").digest()
    if not hmac.compare_digest(integrity, expected):
        raise ValueError("integrity HMAC mismatch")
    sym_key = kbkdf(seed, b"STORAGE", name, 16)
    decryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).decryptor()
    plain = decryptor.update(enc_identity) + decryptor.finalize()
    credential, rest = split_tpm2b(plain)
    if rest:
        raise ValueError("trailing bytes after the credential")
    return credential
