"""EK trust store (manufacturer CA certificates) and EK certificate chain validation.

The store is a set of CA certificates, any of which is a trust anchor: intermediates count as
anchors, as in Keylime's ``tpm_cert_store``. A chain is built from the EK certificate up to the
first store certificate, and every link is decided by **signature verification**: the issuer
name only picks candidate issuers (compared as X.509 names, so RDN attribute order and string
types do not matter; the AuthorityKeyIdentifier key id only orders them). Two CAs with the
same subject name but different keys (two swtpm test CAs) are therefore told apart. A
certificate whose AKID carries an issuer name and serial that fit no store copy (Infineon's
``IFX_RSA_01I``: AKID serial 03, ``IFX_RSA_RT`` has another serial) still chains to the CA whose
key signed it: AKID issuer/serial are not compared, unlike OpenSSL's strict issuer check.
See ``docs/ek-pins.md`` for the admission policy as a whole.

Checked for every link: the issuer's signature over the original tbsCertificate bytes; validity
of every certificate (leaf and CAs, anchor included) at ``now``; that issuers are CAs
(basicConstraints cA=TRUE, keyUsage keyCertSign when keyUsage is present); pathLenConstraint;
at most ``MAX_CHAIN_LENGTH`` certificates. Not checked: EK leaf key usages, EKU and critical SAN
(TCG profiles make these unusual; they are accepted), revocation, name constraints, policies.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from cryptography import x509

from allowlists.certs import EkCertificate, load_certificate, load_certificates
from geoattest.errors import EkUntrusted, PolicyInvalid

_K = TypeVar("_K", bound=Hashable)

MAX_CHAIN_LENGTH = 5
"""Most certificates in a chain, leaf and anchor included."""
MAX_INTERMEDIATES = 8
"""Most extra certificates a caller (an agent) may supply."""
MAX_SIGNATURE_CHECKS = 64
"""Work bound of one path search: crafted same-name intermediates cannot make it explode."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EkTrustStore:
    """The allowlisted EK CA certificates, deduplicated by fingerprint, indexed for lookup."""

    certificates: tuple[EkCertificate, ...]
    sources: Mapping[bytes, tuple[str, ...]]
    """Fingerprint → names of the blobs (files) that held the certificate."""
    by_subject: Mapping[x509.Name, tuple[EkCertificate, ...]]

    @classmethod
    def from_blobs(cls, blobs: Mapping[str, bytes]) -> EkTrustStore:
        """Build a store from ``name → content`` (PEM with one or more certificates, or DER).

        Identical certificates (same sha256 fingerprint) are kept once. Raises
        ``PolicyInvalid`` naming the blob that is not a certificate file, or when no
        certificate is given at all.
        """
        found: dict[bytes, EkCertificate] = {}
        sources: dict[bytes, list[str]] = {}
        for name in sorted(blobs):
            try:
                parsed = load_certificates(blobs[name])
            except EkUntrusted as e:
                raise PolicyInvalid(f"trust store file '{name}': {e.message}") from e
            for cert in parsed:
                found.setdefault(cert.fingerprint, cert)
                sources.setdefault(cert.fingerprint, []).append(name)
        if not found:
            raise PolicyInvalid("EK trust store is empty: no certificate files given")
        certs = tuple(found.values())
        return cls(
            certificates=certs,
            sources={fp: tuple(names) for fp, names in sources.items()},
            by_subject=_index(certs, lambda c: c.subject_name),
        )

    def __len__(self) -> int:
        return len(self.certificates)

    def __contains__(self, cert: object) -> bool:
        return isinstance(cert, EkCertificate) and cert.fingerprint in self.sources


@dataclass(frozen=True, slots=True, kw_only=True)
class EkChain:
    """A validated chain: ``certificates[0]`` is the EK certificate, the last one the anchor."""

    certificates: tuple[EkCertificate, ...]

    @property
    def leaf(self) -> EkCertificate:
        return self.certificates[0]

    @property
    def anchor(self) -> EkCertificate:
        return self.certificates[-1]

    @property
    def anchor_fingerprint(self) -> bytes:
        return self.anchor.fingerprint


def validate_ek_certificate(
    cert: EkCertificate | bytes,
    store: EkTrustStore,
    *,
    now: datetime,
    intermediates: Sequence[bytes] = (),
) -> EkChain:
    """Validate an EK certificate up to a certificate of ``store`` at time ``now``.

    ``intermediates`` are extra, untrusted CA certificates the agent may send; they can link the
    leaf to the store but are never anchors themselves (unless also in the store). The leaf is
    never its own anchor. Raises ``EkUntrusted`` with the precise reason: unparsable
    certificate, leaf or CA outside its validity, unknown issuer, signature that does not
    verify, issuer that is not a CA or may not sign certificates, path too long, more than
    ``MAX_INTERMEDIATES`` intermediates or ``MAX_SIGNATURE_CHECKS`` signature checks.
    ``ValueError`` if ``now`` is naive (a caller bug).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    leaf = cert if isinstance(cert, EkCertificate) else load_certificate(cert)
    if len(intermediates) > MAX_INTERMEDIATES:
        raise EkUntrusted(
            f"{len(intermediates)} intermediate certificates given, at most {MAX_INTERMEDIATES}"
        )
    extra: list[EkCertificate] = []
    for number, blob in enumerate(intermediates, start=1):
        try:
            extra.append(load_certificate(blob))
        except EkUntrusted as e:
            raise EkUntrusted(f"intermediate certificate #{number}: {e.message}") from e
    problem = _validity_problem(leaf, now, "certificate")
    if problem:
        raise EkUntrusted(problem)

    builder = _ChainBuilder(store, extra, now)
    chain = builder.extend([leaf])
    if chain is None:
        raise EkUntrusted(builder.best_failure())
    return EkChain(certificates=tuple(chain))


@dataclass(slots=True)
class _ChainBuilder:
    """Depth-first path building; remembers the most specific failure for the error message."""

    store: EkTrustStore
    extra: list[EkCertificate]
    now: datetime
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    """(rank, depth, message) of every dead end met."""
    signature_checks: int = 0

    def extend(self, path: list[EkCertificate]) -> list[EkCertificate] | None:
        current = path[-1]
        depth = len(path) - 1
        candidates = [c for c in self._candidates(current) if c not in path]
        if not candidates:
            self._fail(0, depth, self._unknown_issuer(current, depth))
            return None
        for issuer in candidates:
            self.signature_checks += 1
            if self.signature_checks > MAX_SIGNATURE_CHECKS:
                self._fail(3, depth, f"gave up after {MAX_SIGNATURE_CHECKS} signature checks")
                return None
            try:
                signed = current.is_signed_by(issuer)
            except EkUntrusted as e:
                self._fail(1, depth, e.message)
                continue
            if not signed:
                self._fail(
                    1,
                    depth,
                    f"signature of {current.label} does not verify with CA {issuer.label} "
                    f"(sha256 {issuer.fingerprint_hex})",
                )
                continue
            problem = _issuer_problem(issuer, current, depth, self.now)
            if problem:
                self._fail(2, depth, problem)
                continue
            longer = [*path, issuer]
            if issuer in self.store:
                return longer
            if len(longer) >= MAX_CHAIN_LENGTH:
                self._fail(2, depth, f"no trust anchor within {MAX_CHAIN_LENGTH} certificates")
                continue
            found = self.extend(longer)
            if found is not None:
                return found
        return None

    def best_failure(self) -> str:
        # Prefer running out of work, then a verified issuer that failed a check, then a bad
        # signature, then an unknown issuer; among equals, the failure furthest up the chain.
        return max(self.failures, key=lambda f: (f[0], f[1]))[2]

    def _fail(self, rank: int, depth: int, message: str) -> None:
        self.failures.append((rank, depth, message))

    def _candidates(self, cert: EkCertificate) -> list[EkCertificate]:
        """Possible issuers: certificates whose subject is ``cert``'s issuer name.

        Those whose key id matches ``cert``'s AKID come first. Only the signature decides.
        """
        named = [
            *self.store.by_subject.get(cert.issuer_name, ()),
            *(c for c in self.extra if c.subject_name == cert.issuer_name),
        ]
        unique = list({c.fingerprint: c for c in named}.values())
        akid = cert.authority_key_id
        return sorted(unique, key=lambda c: akid is None or c.subject_key_id != akid)

    def _unknown_issuer(self, cert: EkCertificate, depth: int) -> str:
        what = "EK certificate" if depth == 0 else "CA certificate"
        if cert.subject_name == cert.issuer_name:
            return (
                f"{what} {cert.label} is self-signed and not its own anchor: it must be "
                f"issued by a CA in the trust store ({len(self.store)} CAs)"
            )
        return (
            f"{what} issuer '{cert.issuer}' not found in trust store ({len(self.store)} CAs)"
            f" for {cert.label}"
        )


def _validity_problem(cert: EkCertificate, now: datetime, what: str) -> str | None:
    if now < cert.not_before:
        return f"{what} {cert.label} is not valid before {cert.not_before:%Y-%m-%d %H:%M:%S} UTC"
    if now > cert.not_after:
        return f"{what} {cert.label} expired on {cert.not_after:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _issuer_problem(
    issuer: EkCertificate, subject: EkCertificate, depth: int, now: datetime
) -> str | None:
    """Why ``issuer`` (verified signer of ``subject``, at chain index depth+1) may not issue."""
    if not issuer.is_ca:
        return (
            f"issuer {issuer.label} of {subject.label} is not a CA "
            "(basicConstraints cA is not TRUE)"
        )
    if not issuer.key_cert_sign:
        return f"keyUsage of CA {issuer.label} does not allow keyCertSign"
    # Intermediates between this issuer and the leaf; the leaf itself is not counted.
    if issuer.path_length is not None and issuer.path_length < depth:
        return (
            f"CA {issuer.label} allows {issuer.path_length} intermediate CAs below it, "
            f"the chain has {depth}"
        )
    return _validity_problem(issuer, now, "CA certificate")


def _index(
    certs: Iterable[EkCertificate], key: Callable[[EkCertificate], _K]
) -> dict[_K, tuple[EkCertificate, ...]]:
    index: dict[_K, list[EkCertificate]] = {}
    for cert in certs:
        index.setdefault(key(cert), []).append(cert)
    return {k: tuple(found) for k, found in index.items()}
