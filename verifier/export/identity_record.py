"""The registrar's signed identity record, as a residency bundle carries it (the interface the
registrar implements; issue 14).

The registrar signs, at activation, the RFC 8785 canonical JSON of::

    {"type": "geoattest.identity-record", "v": 1,
     "agent_id": "...",
     "ek_certificate": "<base64 DER>",
     "ak_public": "<base64 TPM2B_PUBLIC>", "ak_name": "<hex TPM name>",
     "location_key": {"public": "<base64 TPM2B_PUBLIC>",          (geofencing nodes only)
                      "certify_attest": "<base64 TPMS_ATTEST>",
                      "certify_signature": "<base64 TPMT_SIGNATURE>"},
     "activated_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ"}

as a compact JWS (ES256, ``typ`` ``geoattest-identity+jws``, ``kid`` the RFC 7638 thumbprint
of the registrar's key). The bundle stores it as ``identity/registrar-record.jws``; the auditor
gives the registrar's public key (``--registrar-key``). ``check_identity_record`` holds the
signed record to the bundle's identity files: what the registrar saw activate is what the
records were judged with. Pure.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping

from geoattest.errors import BundleInvalid
from verifier.core.record import canonical_json
from verifier.export import layout
from verifier.export.layout import Identity as Files

IDENTITY_TYPE = "geoattest.identity-record"


def encode_identity_record(
    *,
    agent_id: str,
    ek_certificate: bytes,
    ak_public: bytes,
    ak_name: bytes,
    activated_at: dt.datetime,
    location_key: tuple[bytes, bytes, bytes] | None = None,
) -> bytes:
    """The canonical bytes the registrar signs (``location_key``: public, attest, signature)."""
    body: dict[str, object] = {
        "type": IDENTITY_TYPE,
        "v": 1,
        "agent_id": agent_id,
        "ek_certificate": _b64(ek_certificate),
        "ak_public": _b64(ak_public),
        "ak_name": ak_name.hex(),
        "activated_at": layout.time_text(activated_at),
    }
    if location_key is not None:
        public, attest, signature = location_key
        body["location_key"] = {
            "public": _b64(public),
            "certify_attest": _b64(attest),
            "certify_signature": _b64(signature),
        }
    return canonical_json(body)


def check_identity_record(payload: bytes, agent_id: str, files: Mapping[str, bytes]) -> None:
    """The signed record names this agent, its EK certificate, one of the AKs the bundle holds
    for it, and its location key with the same certification; ``BundleInvalid`` otherwise."""
    where = layout.identity_path(agent_id, Files.REGISTRAR_SIGNATURE)
    try:
        body = json.loads(payload)
        if body.get("type") != IDENTITY_TYPE or body.get("v") != 1:
            raise ValueError("not a geoattest identity record of version 1")
        if canonical_json(body) != payload:
            raise ValueError("not in canonical form")
        ek = base64.b64decode(body["ek_certificate"], validate=True)
        ak_name = bytes.fromhex(body["ak_name"])
        ak_public = base64.b64decode(body["ak_public"], validate=True)
        key = body.get("location_key")
    except (ValueError, KeyError, TypeError) as e:
        raise BundleInvalid(f"signed record does not parse: {e}", file=where,
                            check="registrar record") from e  # fmt: skip
    if body["agent_id"] != agent_id:
        raise BundleInvalid(f"is agent {body['agent_id']!r}'s", file=where, check="agent")
    if files.get(layout.identity_path(agent_id, Files.EK_CERTIFICATE)) != ek:
        raise BundleInvalid("names another EK certificate", file=where, check="registrar record")
    if files.get(layout.ak_path(agent_id, ak_name)) != ak_public:
        raise BundleInvalid("names an AK the bundle does not hold", file=where,
                            check="registrar record")  # fmt: skip
    if key is not None:
        expected = {
            "public": files.get(layout.identity_path(agent_id, Files.LOCATION_KEY)),
            "certify_attest": files.get(layout.identity_path(agent_id, Files.CERTIFY_ATTEST)),
            "certify_signature": files.get(layout.identity_path(agent_id, Files.CERTIFY_SIGNATURE)),
        }
        for name, data in expected.items():
            if data is None or base64.b64decode(str(key.get(name, "")), validate=True) != data:
                raise BundleInvalid(f"names another location key ({name})", file=where,
                                    check="registrar record")  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
