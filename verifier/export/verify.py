"""Verifying a residency-proof bundle offline: no database, no service, no clock; the only trust
is what the auditor brings (the verifier's published log keys, the TPM vendors' CA
certificates, and, once the registrar signs its records, the registrar's key).

``verify_bundle`` checks, and refuses with a ``BundleInvalid`` naming the first failing file
and check:

1. ``manifest.jws`` exists (an unsigned bundle is refused), is an ES256 JWS of ``typ``
   ``geoattest-manifest+jws`` by one of the given keys (a signature naming its own key, or by
   a key inside the bundle, is refused: keys come only from the auditor), over exactly
   ``manifest.json``;
2. every file the manifest lists is there with its SHA-256 and size, and no file is there
   that it does not list;
3. ``log/checkpoint.jws`` is a checkpoint of the manifest's log signed by a given key; the
   window checkpoint, when present, also, and consistent with it (RFC 9162);
4. the policies and zones files are those their names (digests) say;
5. each agent (``verify_agent``): log entries and their inclusion, records, hash chain,
   identity, re-verification of every full record, tokens;

then computes, per agent, when it was attested (the lease replayed), the per-day table and
the zone decisions, and lists what could not be checked. Deterministic: the same bundle gives
the same result. Pure: bytes in, results out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import ec

from allowlists.ek_trust import EkTrustStore
from geoattest.errors import BundleInvalid, GeoattestError, LogProofInvalid, SignatureInvalid
from geoattest.identity_statement import StatementInvalid, verify_statement
from geoattest.wire import AgentView, PolicyDocument
from geofence import ZoneSet, load_zones
from verifier.core.checkpoint import Checkpoint, verify_checkpoint
from verifier.core.identity import facts_of
from verifier.core.jws import verify_compact
from verifier.core.merkle import verify_consistency
from verifier.core.policy import AttestationPolicy, policy_from_document
from verifier.export import layout
from verifier.export.layout import Manifest
from verifier.export.results import AgentVerification, BundleVerification
from verifier.export.timeline import answer_at, attested_intervals, day_summaries, gaps_of
from verifier.export.verify_agent import verify_agent

__all__ = ["Trust", "verify_bundle"]


class Trust:
    """What the auditor trusts, given outside the bundle."""

    def __init__(
        self,
        *,
        verifier_keys: Mapping[str, ec.EllipticCurvePublicKey],
        ek_store: EkTrustStore,
        registrar_keys: Mapping[str, ec.EllipticCurvePublicKey] | None = None,
    ) -> None:
        self.verifier_keys = dict(verifier_keys)
        self.ek_store = ek_store
        self.registrar_keys = dict(registrar_keys) if registrar_keys else None


def verify_bundle(
    files: Mapping[str, bytes], trust: Trust, *, at: dt.datetime | None = None
) -> BundleVerification:
    """Verify ``files`` (path → bytes, as read from the archive); see the module docstring."""
    manifest = _manifest(files, trust)
    _digests(files, manifest)
    checkpoint, logged_by = _checkpoints(files, manifest, trust)
    zones = _zones(files, manifest)
    policies = _policies(files, manifest, zones)
    not_checked: Counter[str] = Counter()
    agents = []
    for entry in manifest.agents:
        checks = verify_agent(
            entry.agent_id,
            files,
            checkpoint=checkpoint,
            policies=policies,
            ek_store=trust.ek_store,
        )
        _registrar_signature(entry.agent_id, files, trust, checks.not_checked)
        not_checked.update(checks.not_checked)
        links = tuple(checks.links)
        max_age = checks.max_age or manifest.default_max_age
        start, end = manifest.window_from, manifest.window_to
        attested, unplaced = attested_intervals(links, max_age, start, end)
        gaps = gaps_of(attested, start, end)
        in_window = tuple(link for link in links if link.ended_at >= start)
        agents.append(
            AgentVerification(
                agent_id=entry.agent_id,
                policy=entry.policy,
                identity=checks.identity,
                links=in_window,
                attested=tuple(attested),
                gaps=tuple(gaps),
                unplaced_gap_seconds=unplaced,
                days=tuple(
                    day_summaries(
                        in_window, gaps, start, end, location_required=checks.location_required
                    )
                ),
                location_required=checks.location_required,
                records_verified=checks.records_verified,
                not_checked=tuple(
                    f"{what} ({n})" for what, n in sorted(checks.not_checked.items())
                ),
                at=answer_at(links, attested, at) if at is not None else None,
            )
        )
    return BundleVerification(
        manifest=manifest,
        checkpoint=checkpoint,
        logged_by=logged_by,
        agents=tuple(agents),
        files=len(files),
        not_checked=tuple(f"{what} ({n})" for what, n in sorted(not_checked.items())),
    )


def _manifest(files: Mapping[str, bytes], trust: Trust) -> Manifest:
    if layout.MANIFEST_SIGNATURE not in files:
        raise BundleInvalid(
            "is missing: the bundle is not signed", file=layout.MANIFEST_SIGNATURE,
            check="manifest signature",
        )  # fmt: skip
    if layout.MANIFEST not in files:
        raise BundleInvalid("is missing", file=layout.MANIFEST, check="presence")
    try:
        token = files[layout.MANIFEST_SIGNATURE].decode("ascii")
        signed = verify_compact(token, typ=layout.MANIFEST_TYP, keys=trust.verifier_keys)
    except (UnicodeDecodeError, SignatureInvalid) as e:
        message = e.message if isinstance(e, SignatureInvalid) else "is not a compact JWS"
        raise BundleInvalid(message, file=layout.MANIFEST_SIGNATURE,
                            check="manifest signature") from e  # fmt: skip
    if signed.payload != files[layout.MANIFEST]:
        raise BundleInvalid("is not the manifest the signature covers", file=layout.MANIFEST,
                            check="manifest signature")  # fmt: skip
    return layout.decode_manifest(files[layout.MANIFEST])


def _digests(files: Mapping[str, bytes], manifest: Manifest) -> None:
    listed = {f.path: f for f in manifest.files}
    for path in sorted(files):
        if path in (layout.MANIFEST, layout.MANIFEST_SIGNATURE):
            continue
        if path not in listed:
            raise BundleInvalid("is not listed in the manifest", file=path, check="manifest")
    for path, digest in sorted(listed.items()):
        data = files.get(path)
        if data is None:
            raise BundleInvalid("is listed in the manifest but missing", file=path,
                                check="manifest")  # fmt: skip
        if len(data) != digest.size or hashlib.sha256(data).digest() != digest.sha256:
            raise BundleInvalid("does not have the SHA-256 the manifest lists", file=path,
                                check="file digest")  # fmt: skip


def _checkpoints(
    files: Mapping[str, bytes], manifest: Manifest, trust: Trust
) -> tuple[Checkpoint, Checkpoint | None]:
    checkpoint = _checkpoint(files, layout.CHECKPOINT, manifest, trust)
    if checkpoint.size != manifest.log_size:
        raise BundleInvalid("is not the checkpoint the manifest names", file=layout.CHECKPOINT,
                            check="checkpoint")  # fmt: skip
    if layout.WINDOW_CHECKPOINT not in files:
        return checkpoint, None
    first = _checkpoint(files, layout.WINDOW_CHECKPOINT, manifest, trust)
    if first.size == checkpoint.size:
        if first.root != checkpoint.root:
            raise BundleInvalid("has another root for the same tree", check="consistency",
                                file=layout.WINDOW_CHECKPOINT)  # fmt: skip
        return checkpoint, first
    if layout.CONSISTENCY not in files:
        raise BundleInvalid("is missing", file=layout.CONSISTENCY, check="consistency")
    old, new, path = layout.decode_consistency(files[layout.CONSISTENCY])
    try:
        if (old, new) != (first.size, checkpoint.size):
            raise LogProofInvalid("proves other tree sizes than the two checkpoints'")
        verify_consistency(old, new, first.root, checkpoint.root, path)
    except LogProofInvalid as e:
        raise BundleInvalid(e.message, file=layout.CONSISTENCY, check="consistency") from e
    return checkpoint, first


def _checkpoint(
    files: Mapping[str, bytes], path: str, manifest: Manifest, trust: Trust
) -> Checkpoint:
    if path not in files:
        raise BundleInvalid("is missing", file=path, check="presence")
    try:
        return verify_checkpoint(
            files[path].decode("ascii"), trust.verifier_keys, origin=manifest.log_origin
        ).checkpoint
    except (UnicodeDecodeError, SignatureInvalid) as e:
        message = e.message if isinstance(e, SignatureInvalid) else "is not a compact JWS"
        raise BundleInvalid(message, file=path, check="checkpoint signature") from e


def _zones(files: Mapping[str, bytes], manifest: Manifest) -> dict[bytes, ZoneSet | str]:
    found: dict[bytes, ZoneSet | str] = {}
    for path in sorted(p for p in files if p.startswith("zones/")):
        digest = _named_digest(path, files[path], ".geojson")
        try:
            found[digest] = load_zones(files[path].decode("utf-8"), repair=manifest.zones_repair)
        except (UnicodeDecodeError, GeoattestError) as e:
            found[digest] = f"zones file {digest.hex()[:16]}… does not load: {e}"
    return found


def _policies(
    files: Mapping[str, bytes], manifest: Manifest, zones: Mapping[bytes, ZoneSet | str]
) -> dict[bytes, AttestationPolicy | str]:
    """Each policy the records name, built as the verifier built it (with the zones the
    records name), or why it cannot be."""
    wanted: dict[bytes, tuple[str, int, bytes | None]] = {}
    for entry in manifest.agents:
        prefix = f"{layout.agent_dir(entry.agent_id)}/records/"
        for path in (p for p in files if p.startswith(prefix)):
            # Only the references: each record is decoded (and held canonical) once, later.
            try:
                body = json.loads(files[path])
                ref = body["policy"]
                zones_digest = (
                    bytes.fromhex(body["zones_sha256"]) if "zones_sha256" in body else None
                )
                key = (str(ref["name"]), int(ref["version"]), zones_digest)
                wanted.setdefault(bytes.fromhex(ref["sha256"]), key)
            except (ValueError, KeyError, TypeError):
                continue  # no policy (an operator record), or refused by the agent's checks
    built: dict[bytes, AttestationPolicy | str] = {}
    for digest, (name, version, zones_digest) in wanted.items():
        path = layout.policy_path(digest)
        if path not in files:
            built[digest] = f"records whose policy {name} v{version} is not in the bundle"
            continue
        _named_digest(path, files[path], ".json")
        zone_set = zones.get(zones_digest) if zones_digest is not None else None
        if isinstance(zone_set, str):
            built[digest] = zone_set
            continue
        try:
            document = PolicyDocument.model_validate_json(files[path])
            built[digest] = policy_from_document(name, version, document, zone_set, digest=digest)
        except (ValueError, GeoattestError) as e:
            built[digest] = f"records whose policy {name} v{version} does not load: {e}"
    return built


def _named_digest(path: str, data: bytes, suffix: str) -> bytes:
    digest = hashlib.sha256(data).digest()
    if path != f"{path.split('/')[0]}/{digest.hex()}{suffix}":
        raise BundleInvalid("is not the document its name (digest) says", file=path,
                            check="document digest")  # fmt: skip
    return digest


def _registrar_signature(
    agent_id: str, files: Mapping[str, bytes], trust: Trust, not_checked: Counter[str]
) -> None:
    """The registrar's signed statement (``geoattest.identity_statement``) in the record the
    bundle carries describes that record exactly; the record's own checks then tie it to the
    bundle's identity files (``verify_agent``)."""
    path = layout.identity_path(agent_id, layout.Identity.REGISTRAR_RECORD)
    if trust.registrar_keys is None:
        not_checked["the registrar's signature: no registrar key given (--registrar-key)"] += 1
        return
    try:
        view = AgentView.model_validate_json(files[path])
    except (KeyError, ValueError) as e:
        raise BundleInvalid("is missing or does not parse", file=path, check="presence") from e
    named = _statement_key(view.identity_statement)
    key = trust.registrar_keys.get(named or "")
    if key is None:
        raise BundleInvalid(
            "is not signed by a registrar key the auditor gave (--registrar-key)",
            file=path,
            check="registrar signature",
        )
    try:
        verify_statement(facts_of(view), view.identity_statement, view.identity_signature, key)
    except StatementInvalid as e:
        raise BundleInvalid(str(e), file=path, check="registrar signature") from e


def _statement_key(statement: bytes | None) -> str | None:
    try:
        body = json.loads(statement or b"")
    except ValueError:
        return None
    named = body.get("registrar_key") if isinstance(body, dict) else None
    return named if isinstance(named, str) else None
