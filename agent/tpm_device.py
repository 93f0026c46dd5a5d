"""The agent's TPM: EK certificate and EK, attestation key, credential activation, quotes, PCRs.

``TpmDevice`` wraps a tpm2-pytss ``ESAPI`` opened from a TCTI string (``swtpm:host=…,port=…`` in
tests and quickstart, ``device:/dev/tpmrm0`` in production, also ``mssim:`` and ``tabrmd:``).
Outputs are marshalled TPM structures (bytes) for the pure ``tpm`` package to check.

Errors: the TPM could not be reached or the transport broke → ``TpmUnavailable``; the TPM answered
a command with an error → ``TpmCommandFailed`` (both are reachability faults: retry, never revoke);
the TPM refused a MakeCredential blob → ``CredentialActivationRefused`` (evidence problem).

Every transient object and session this class creates is flushed before the method returns: swtpm
without a resource manager has only three transient object slots.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Literal, Self, TypeVar

from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE, TPMA_OBJECT
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PUBLIC,
    TPMT_PUBLIC,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
)

from agent import _pcr, _quote
from agent._ek_template import (
    EK_PROFILES,
    EkProfile,
    KeyAlgorithm,
    apply_nonce,
    signing_key_template,
)
from agent._pcr import PcrSelection, PcrValues
from agent._quote import TpmQuote
from agent._tpm_connection import HT_NV_INDEX, HT_PERSISTENT, TpmConnection, parse_tcti
from agent._tpm_connection import is_tpm_response as _is_tpm_response
from geoattest.errors import (
    ConfigurationError,
    CredentialActivationRefused,
    MalformedRequest,
    TpmUnavailable,
)
from geoattest.pcr_banks import PcrBank

__all__ = [
    "DEFAULT_AK_HANDLE",
    "DEFAULT_LOCATION_KEY_HANDLE",
    "EkAlgorithm",
    "KeyAlgorithm",
    "TpmDevice",
    "TpmQuote",
    "parse_tcti",
    "signing_key_template",
]

logger = logging.getLogger(__name__)

EkAlgorithm = Literal["auto", "ecc", "rsa"]
DEFAULT_AK_HANDLE = 0x81010002
DEFAULT_LOCATION_KEY_HANDLE = 0x81010003
MAX_NONCE_BYTES = 64  # TPM2B_DATA holds at most sizeof(TPMT_HA)


class TpmDevice:
    """One open connection to a TPM. Use as a context manager or call ``close()``.

    ``ek_algorithm`` picks the EK: ``ecc`` or ``rsa``, or ``auto`` (ECC when an ECC EK
    certificate is provisioned, else RSA). Raises TpmUnavailable when the TCTI cannot be opened.
    """

    def __init__(self, tcti: str, *, ek_algorithm: EkAlgorithm = "auto") -> None:
        if ek_algorithm not in ("auto", "ecc", "rsa"):
            raise ConfigurationError(f"ek_algorithm must be auto, ecc or rsa, not {ek_algorithm!r}")
        self._conn = TpmConnection(tcti)
        self.tcti = tcti
        self._ek_algorithm: EkAlgorithm = ek_algorithm
        self._ek_profile: EkProfile | None = None
        self._ek_public: TPM2B_PUBLIC | None = None
        logger.debug("opened TPM at %s", tcti)

    def close(self) -> None:
        """Release the ESAPI context and the TCTI (idempotent). Persistent keys stay in the TPM."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- endorsement key -------------------------------------------------------------------------

    @property
    def ek_profile(self) -> EkProfile:
        """The EK template in use: per ``ek_algorithm``, the first profile with a certificate in NV.

        Without any certificate, the low-range template of the algorithm (RSA for ``auto``).
        """
        if self._ek_profile is None:
            present = self._conn.handles(HT_NV_INDEX)
            wanted: tuple[KeyAlgorithm, ...] = (
                ("ecc", "rsa") if self._ek_algorithm == "auto" else (self._ek_algorithm,)
            )
            candidates = [p for alg in wanted for p in EK_PROFILES[alg]]
            with_cert = [p for p in candidates if p.cert_index in present]
            fallback = EK_PROFILES["rsa" if self._ek_algorithm == "auto" else wanted[0]][0]
            self._ek_profile = with_cert[0] if with_cert else fallback
            logger.debug("TPM %s: EK profile %s", self.tcti, self._ek_profile.name)
        return self._ek_profile

    def read_ek_certificate(self) -> bytes:
        """DER EK certificate from NV (trailing NV padding removed).

        Raises ConfigurationError when the TPM has no certificate for the chosen EK.
        """
        profile = self.ek_profile
        if profile.cert_index not in self._conn.handles(HT_NV_INDEX):
            raise ConfigurationError(
                f"TPM {self.tcti} has no EK certificate at NV index {profile.cert_index:#010x} "
                f"({profile.algorithm} EK); it cannot enrol"
            )
        return _trim_der(self._conn.nv_read(profile.cert_index))

    def _ek_template(self) -> TPM2B_PUBLIC:
        """The profile's template, replaced by a vendor template and nonce from NV when present."""
        profile = self.ek_profile
        present = self._conn.handles(HT_NV_INDEX)
        template = profile.template()
        if profile.template_index in present:
            area, _ = TPMT_PUBLIC.unmarshal(self._conn.nv_read(profile.template_index))
            template = TPM2B_PUBLIC(publicArea=area)
        if profile.nonce_index is not None and profile.nonce_index in present:
            apply_nonce(template, self._conn.nv_read(profile.nonce_index))
        return template

    @contextmanager
    def _loaded_ek(self) -> Iterator[tuple[ESYS_TR, TPM2B_PUBLIC]]:
        """The EK recreated with CreatePrimary in the endorsement hierarchy; flushed on exit."""
        template = self._ek_template()
        with self._conn.calling("CreatePrimary(EK)"):
            handle, public, _, _, _ = self._conn.esapi.create_primary(
                None, template, ESYS_TR.ENDORSEMENT
            )
        try:
            self._ek_public = public
            yield handle, public
        finally:
            self._conn.flush(handle)

    def ek_public(self) -> bytes:
        """Marshalled TPM2B_PUBLIC of the EK (recreated from its template once, then cached)."""
        if self._ek_public is None:
            with self._loaded_ek():
                pass
        assert self._ek_public is not None  # noqa: S101 - set by _loaded_ek
        return bytes(self._ek_public.marshal())

    @contextmanager
    def _ek_user_auth(self, ek_public: TPM2B_PUBLIC) -> Iterator[ESYS_TR]:
        """Authorisation for using the EK (USER role).

        High-range EKs have userWithAuth and an empty authValue: a password session. Low-range EKs
        need their policy, PolicySecret(TPM_RH_ENDORSEMENT), in a fresh policy session (a policy
        session is spent by the command it authorises), flushed on exit.
        """
        area = ek_public.publicArea
        if area.objectAttributes & TPMA_OBJECT.USERWITHAUTH:
            yield ESYS_TR.PASSWORD
            return
        with self._conn.calling("StartAuthSession(EK policy)"):
            session = self._conn.esapi.start_auth_session(
                ESYS_TR.NONE,
                ESYS_TR.NONE,
                TPM2_SE.POLICY,
                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                area.nameAlg,
            )
        try:
            with self._conn.calling("PolicySecret(ENDORSEMENT)"):
                self._conn.esapi.policy_secret(ESYS_TR.ENDORSEMENT, session)
            yield session
        finally:
            self._conn.flush(session)

    # --- keys ------------------------------------------------------------------------------------

    def read_public(self, handle: int) -> bytes:
        """Marshalled TPM2B_PUBLIC of the key at a persistent handle."""
        key = self._conn.persistent_key(handle)
        with self._conn.calling(f"ReadPublic({handle:#x})"):
            public, _, _ = self._conn.esapi.read_public(key)
        return bytes(public.marshal())

    def ensure_ak(self, handle: int = DEFAULT_AK_HANDLE, alg: KeyAlgorithm = "ecc") -> bytes:
        """TPM2B_PUBLIC of the attestation key at ``handle``, creating and persisting it if absent.

        An existing key is reused (an agent restart keeps its AK) after checking it is a restricted
        signing key of ``alg``; anything else at the handle raises ConfigurationError rather than
        being evicted. The new AK is a child of the EK (see ``create_signing_key``).
        """
        if handle in self._conn.handles(HT_PERSISTENT):
            public, _ = TPM2B_PUBLIC.unmarshal(self.read_public(handle))
            _check_is_ak(public, alg, handle)
            return bytes(public.marshal())
        public_bytes = self.create_signing_key(signing_key_template(alg), handle=handle)
        logger.info("created %s AK at persistent handle %#x on %s", alg, handle, self.tcti)
        return public_bytes

    def create_signing_key(self, template: TPM2B_PUBLIC, *, handle: int | None = None) -> bytes:
        """Create a key from ``template`` as a child of the EK and return its TPM2B_PUBLIC.

        With ``handle`` the key is made persistent there (EvictControl) for later quotes, certify
        and activation; the handle must be empty (ConfigurationError otherwise). Without it the key
        is flushed at once: its public area is all a negative test needs (e.g. an AK without
        fixedTPM or restricted, from ``signing_key_template``, which a registrar must refuse).

        Why a child of the EK and not an endorsement-hierarchy primary: it is what tpm2_createak
        and Keylime do, so AKs made by standard tools and by us are interchangeable, and the AK is
        a random (not seed-derived) key that only this TPM ever held.
        """
        if handle is not None and handle in self._conn.handles(HT_PERSISTENT):
            raise ConfigurationError(f"persistent handle {handle:#x} on {self.tcti} is in use")
        with self._loaded_ek() as (ek, ek_public):
            with self._ek_user_auth(ek_public) as auth, self._conn.calling("Create(key under EK)"):
                private, public, _, _, _ = self._conn.esapi.create(
                    ek, None, template, session1=auth
                )
            if handle is None:
                return bytes(public.marshal())
            with self._ek_user_auth(ek_public) as auth, self._conn.calling("Load(key under EK)"):
                key = self._conn.esapi.load(ek, private, public, session1=auth)
        try:
            self._conn.make_persistent(key, handle)
        finally:
            self._conn.flush(key)
        return bytes(public.marshal())

    # --- credential activation -------------------------------------------------------------------

    def activate_credential(
        self, credential_blob: bytes, encrypted_secret: bytes, *, ak_handle: int = DEFAULT_AK_HANDLE
    ) -> bytes:
        """Recover the secret of a MakeCredential challenge (TPM2_ActivateCredential, AK + EK).

        ``credential_blob`` is a marshalled TPM2B_ID_OBJECT, ``encrypted_secret`` a marshalled
        TPM2B_ENCRYPTED_SECRET. Raises CredentialActivationRefused when they do not parse or the
        TPM refuses them (not made for this EK and AK name), TpmUnavailable on transport errors.
        """
        blob = _unmarshal_exact(TPM2B_ID_OBJECT, credential_blob, "credential blob")
        secret = _unmarshal_exact(TPM2B_ENCRYPTED_SECRET, encrypted_secret, "encrypted secret")
        ak = self._conn.persistent_key(ak_handle)
        with self._loaded_ek() as (ek, ek_public), self._ek_user_auth(ek_public) as auth:
            try:
                cert_info = self._conn.esapi.activate_credential(
                    ak, ek, blob, secret, session1=ESYS_TR.PASSWORD, session2=auth
                )
            except TSS2_Exception as e:
                if _is_tpm_response(e):
                    raise CredentialActivationRefused(
                        f"TPM {self.tcti} refused the credential for AK {ak_handle:#x}: {e}"
                    ) from e
                raise TpmUnavailable(
                    f"ActivateCredential: TPM {self.tcti} did not answer: {e}"
                ) from e
        return bytes(cert_info)

    # --- PCRs and quotes -------------------------------------------------------------------------

    def pcr_read(self, pcrs: PcrSelection) -> PcrValues:
        """Current PCR values, ``{bank: {index: digest}}``, read consistently (no extend between
        chunks). Raises ConfigurationError for unknown or inactive banks."""
        wanted = _pcr.normalize(pcrs)
        return _quote.retry_on_change(lambda: _quote.read_once(self._conn, wanted)[1])

    def pcr_extend(self, index: int, digests_by_bank: Mapping[PcrBank, bytes]) -> None:
        """Extend PCR ``index`` with one digest per bank (``{PcrBank.SHA256: digest}``).

        Raises ValueError when a digest length does not fit its bank (a caller bug).
        """
        _quote.extend(self._conn, index, digests_by_bank)

    def quote(
        self,
        nonce: bytes,
        pcrs: PcrSelection,
        *,
        ak_handle: int = DEFAULT_AK_HANDLE,
    ) -> TpmQuote:
        """TPM2_Quote over ``pcrs`` with ``nonce`` as qualifying data, signed by the AK's scheme.

        The PCR values returned are those the quote covers (retaken when an extend happened in
        between). Raises MalformedRequest when the nonce is longer than 64 bytes,
        ConfigurationError when there is no key at ``ak_handle``.
        """
        if len(nonce) > MAX_NONCE_BYTES:
            raise MalformedRequest(f"nonce is {len(nonce)} bytes; a TPM quote takes at most 64")
        wanted = _pcr.normalize(pcrs)
        return _quote.quote(self._conn, self._conn.persistent_key(ak_handle), nonce, wanted)

    # --- location key (certified by the AK) ------------------------------------------------------

    def create_location_key(self, handle: int = DEFAULT_LOCATION_KEY_HANDLE) -> bytes:
        """TPM2B_PUBLIC of the location key (ECC P-256, unrestricted signing, fixedTPM), created
        and persisted at ``handle`` if absent, reused otherwise."""
        if handle in self._conn.handles(HT_PERSISTENT):
            return self.read_public(handle)
        return self.create_signing_key(signing_key_template("ecc", restricted=False), handle=handle)

    def certify(
        self, key_handle: int, qualifying_data: bytes, *, ak_handle: int = DEFAULT_AK_HANDLE
    ) -> tuple[bytes, bytes]:
        """TPM2_Certify of the key at ``key_handle`` by the AK: (TPMS_ATTEST, TPMT_SIGNATURE)."""
        if len(qualifying_data) > MAX_NONCE_BYTES:
            raise MalformedRequest("qualifying data is longer than 64 bytes")
        key, ak = self._conn.persistent_key(key_handle), self._conn.persistent_key(ak_handle)
        with self._conn.calling("Certify"):
            attest, signature = self._conn.esapi.certify(
                key, ak, qualifying_data, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
            )
        return bytes(attest), bytes(signature.marshal())

    def sign_digest(self, key_handle: int, digest: bytes) -> bytes:
        """TPM2_Sign of a SHA-256 digest with an unrestricted key: marshalled TPMT_SIGNATURE."""
        if len(digest) != PcrBank.SHA256.digest_size:
            raise ValueError("sign_digest takes a 32-byte SHA-256 digest")
        key = self._conn.persistent_key(key_handle)
        with self._conn.calling("Sign"):
            signature = self._conn.esapi.sign(key, digest, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
        return bytes(signature.marshal())


def _check_is_ak(public: TPM2B_PUBLIC, alg: KeyAlgorithm, handle: int) -> None:
    """Raise ConfigurationError unless ``public`` is a restricted signing key of ``alg``."""
    area = public.publicArea
    expected_type = TPM2_ALG.ECC if alg == "ecc" else TPM2_ALG.RSA
    attrs = area.objectAttributes
    needed = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM
    if area.type != expected_type or (attrs & needed) != needed:
        raise ConfigurationError(
            f"persistent handle {handle:#x} holds a key that is not a restricted {alg} signing "
            "key; refusing to use or replace it (evict it with tpm2_evictcontrol if intended)"
        )


_U = TypeVar("_U", TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)


def _unmarshal_exact(kind: type[_U], data: bytes, what: str) -> _U:
    """Unmarshal a TPM2B with no trailing bytes; raises CredentialActivationRefused otherwise."""
    try:
        value, used = kind.unmarshal(data)
    except TSS2_Exception as e:
        raise CredentialActivationRefused(f"{what} is not a valid {kind.__name__}: {e}") from e
    if used != len(data):
        raise CredentialActivationRefused(
            f"{what} has {len(data) - used} trailing bytes after its {kind.__name__}"
        )
    return value


def _trim_der(data: bytes) -> bytes:
    """The DER SEQUENCE at the start of ``data`` (NV indices may be padded after it)."""
    if len(data) < 2 or data[0] != 0x30:
        return data
    length = data[1]
    if length < 0x80:
        return data[: 2 + length]
    count = length & 0x7F
    total = 2 + count + int.from_bytes(data[2 : 2 + count], "big")
    return data[:total] if total <= len(data) else data
