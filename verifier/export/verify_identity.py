"""Step 4 of verifying one agent of a residency bundle (``verify_agent``): its identity, i.e.
the AK public areas the records name, the location key and its TPM2_Certify by the registrar's
AK, the registrar's record consistent with both, the EK certificate's chain to one of the
auditor's CAs at the window's first and last record, and no nonce used twice."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

import tpm
from allowlists.ek_trust import EkTrustStore, validate_ek_certificate
from geoattest.errors import (
    BundleInvalid,
    CertifyInvalid,
    EkUntrusted,
    GeoattestError,
    TpmFormatError,
)
from geoattest.wire import AgentView, location_key_qualifying_data
from verifier.export import layout
from verifier.export.agent_checks import AgentChecks, FullRecord
from verifier.export.layout import Identity as Files
from verifier.export.results import Identity

# --- 4. identity -----------------------------------------------------------------------------


def verify_identity(
    agent_id: str,
    files: Mapping[str, bytes],
    records: Mapping[int, FullRecord],
    ek_store: EkTrustStore,
    checks: AgentChecks,
) -> dict[bytes, tpm.TpmPublic]:
    """Check the identity files; returns the TPM public areas by name (AKs, location key)."""
    publics: dict[bytes, tpm.TpmPublic] = {}
    for name in {r.record.ak_name for r in records.values()} - {None}:
        assert name is not None  # noqa: S101  # filtered above
        path = layout.ak_path(agent_id, name)
        if path not in files:
            checks.skip("records whose AK is not in the bundle: not re-verified")
            continue
        ak = _public(files[path], path)
        if ak.name != name:
            raise BundleInvalid("is not the AK its name says", file=path, check="AK name")
        publics[name] = ak
    view = _registrar_record(agent_id, files)
    location = _location_key(agent_id, files, view, publics)
    if location is not None:
        publics[location.name] = location
    nonces: set[bytes] = set()
    for full in records.values():
        evidence = full.record.evidence
        if evidence is not None:
            if evidence.nonce in nonces:
                raise BundleInvalid("answers a nonce already answered", file=full.path,
                                    check="nonce replay")  # fmt: skip
            nonces.add(evidence.nonce)
    times = sorted(r.record.ended_at for r in records.values())
    checks.identity = _ek(agent_id, files, view, ek_store, times, publics, location)
    checks.skip("credential activation (EK to AK): interactive, taken from the registrar's record")
    return publics


def _public(data: bytes, path: str) -> tpm.TpmPublic:
    try:
        return tpm.parse_tpm2b_public(data)
    except TpmFormatError as e:
        raise BundleInvalid(e.message, file=path, check="TPM public area") from e


def _registrar_record(agent_id: str, files: Mapping[str, bytes]) -> AgentView:
    path = layout.identity_path(agent_id, Files.REGISTRAR_RECORD)
    if path not in files:
        raise BundleInvalid("is missing", file=path, check="presence")
    try:
        view = AgentView.model_validate_json(files[path])
    except ValueError as e:
        raise BundleInvalid(f"does not parse: {e}", file=path, check="format") from e
    if view.agent_id != agent_id:
        raise BundleInvalid(f"is agent {view.agent_id!r}'s", file=path, check="agent")
    ek_path = layout.identity_path(agent_id, Files.EK_CERTIFICATE)
    if files.get(ek_path) != view.ek_certificate:
        raise BundleInvalid("is not the EK certificate of the registrar's record", file=ek_path,
                            check="identity")  # fmt: skip
    return view


def _location_key(
    agent_id: str,
    files: Mapping[str, bytes],
    view: AgentView,
    publics: Mapping[bytes, tpm.TpmPublic],
) -> tpm.TpmPublic | None:
    path = layout.identity_path(agent_id, Files.LOCATION_KEY)
    if path not in files:
        return None
    key = _public(files[path], path)
    if view.location_key_public != files[path]:
        raise BundleInvalid("is not the location key of the registrar's record", file=path,
                            check="identity")  # fmt: skip
    attest_path = layout.identity_path(agent_id, Files.CERTIFY_ATTEST)
    signature_path = layout.identity_path(agent_id, Files.CERTIFY_SIGNATURE)
    if view.ak_public is None or attest_path not in files or signature_path not in files:
        raise BundleInvalid("comes without its certification by the AK", file=path,
                            check="location key certification")  # fmt: skip
    ak = _public(view.ak_public, layout.identity_path(agent_id, Files.REGISTRAR_RECORD))
    try:
        tpm.check_location_key_attributes(key)
        tpm.verify_certify(
            signer=ak,
            attest=files[attest_path],
            signature=files[signature_path],
            certified=key,
            qualifying_data=location_key_qualifying_data(agent_id, ak.name),
        )
    except (CertifyInvalid, GeoattestError) as e:
        raise BundleInvalid(e.message, file=attest_path, check="location key certification") from e
    return key


def _ek(
    agent_id: str,
    files: Mapping[str, bytes],
    view: AgentView,
    store: EkTrustStore,
    times: list[dt.datetime],
    publics: Mapping[bytes, tpm.TpmPublic],
    location: tpm.TpmPublic | None,
) -> Identity:
    path = layout.identity_path(agent_id, Files.EK_CERTIFICATE)
    chain_prefix = layout.identity_path(agent_id, Files.EK_CHAIN) + "/"
    intermediates = [files[p] for p in sorted(files) if p.startswith(chain_prefix)]
    chain = None
    for moment in dict.fromkeys([times[0], times[-1]] if times else []):
        try:
            chain = validate_ek_certificate(
                files[path], store, now=moment, intermediates=intermediates
            )
        except EkUntrusted as e:
            raise BundleInvalid(
                f"does not chain to a given EK CA at {moment:%Y-%m-%d %H:%M:%S}Z: {e.message}",
                file=path,
                check="EK chain",
            ) from e
    leaf = chain.leaf if chain is not None else None
    return Identity(
        ek_fingerprint=hashlib.sha256(files[path]).hexdigest(),
        ek_subject=leaf.subject if leaf else "",
        ek_issuer=leaf.issuer if leaf else "",
        tpm_manufacturer=leaf.tpm_manufacturer if leaf else view.tpm_manufacturer,
        tpm_model=leaf.tpm_model if leaf else view.tpm_model,
        chain=tuple(c.subject or c.label for c in chain.certificates[1:]) if chain else (),
        ak_names=tuple(sorted(n.hex() for n in publics if location is None or n != location.name)),
        location_key=location.name.hex() if location is not None else None,
    )
