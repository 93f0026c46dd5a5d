"""Convert a Keylime runtime policy (``meta.version`` 1 JSON) into our ``RuntimePolicy``.

What maps across:

- ``digests``: path -> hex digests. Keylime lists bare hex (or ``alg:hex``); bare hex gets its
  algorithm from its length (40 sha1, 64 sha256, 96 sha384, 128 sha512; sm3 policies must be
  written as ``sm3:hex`` since its digests are as long as sha256's).
- ``excludes``: Keylime's are regexes matched at the start of the path; they become our
  ``exclude_regexes`` verbatim (same semantics), never globs.
- ``keyrings``, ``ima-buf``: name -> digests (same rule as ``digests``).
- ``ima.ignored_keyrings``: kept.

What does not (each is reported in ``KeylimeConversion.notes``; all make the result stricter,
never looser): ``verification-keys`` (signature-based appraisal: we allow by digest only),
``ima.dm_policy`` (device-mapper validation), ``ima.log_hash_alg`` (we replay every quoted bank
and verify the sha1 template hash anyway), ``release`` and ``meta``.

A DSSE-signed policy (``keylime_sign_runtime_policy``) is converted only after its signature
verified under the key the operator gives (``allowlists.ima.keylime_dsse``); without a key it is
refused (``PolicyKeyRequired``), never imported unverified. Given a key, a plain policy is refused
(``PolicyNotSigned``): asking for a signature and accepting none would be a silent downgrade.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from allowlists.ima.keylime_dsse import is_dsse_envelope, open_keylime_envelope
from allowlists.ima.policy import RuntimePolicy, check_digest_text, load_json_object
from geoattest.errors import PolicyInvalid, PolicyKeyRequired, PolicyNotSigned

_KEYLIME_KEYS = frozenset(
    {"meta", "release", "digests", "excludes", "keyrings", "ima", "ima-buf", "verification-keys"}
)
_ALG_BY_HEX_LENGTH = {40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeylimeConversion:
    """The converted policy and what was left behind (human-readable notes)."""

    policy: RuntimePolicy
    notes: tuple[str, ...]


def _digest(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PolicyInvalid(f"{where}: expected a hex digest string")
    text = value.strip().lower()
    if ":" not in text:
        alg = _ALG_BY_HEX_LENGTH.get(len(text))
        if alg is None:
            raise PolicyInvalid(f"{where}: {len(text)} hex digits match no known digest size")
        text = f"{alg}:{text}"
    return check_digest_text(text, where)


def _table(document: Mapping[str, object], key: str) -> dict[str, frozenset[str]]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise PolicyInvalid(f"$.{key}: expected an object")
    table: dict[str, frozenset[str]] = {}
    for name, digests in value.items():
        spot = f"$.{key}[{json.dumps(name)}]"
        if not isinstance(digests, list):
            raise PolicyInvalid(f"{spot}: expected a list of digests")
        table[name] = frozenset(_digest(item, f"{spot}[{i}]") for i, item in enumerate(digests))
    return table


def _string_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyInvalid(f"{where}: expected a list of strings")
    return value


def convert_keylime_policy(
    text: str, *, key: ec.EllipticCurvePublicKey | None = None
) -> KeylimeConversion:
    """Convert Keylime runtime-policy JSON, or a DSSE envelope of one verified under ``key``.

    Raises ``PolicyInvalid`` naming the offending location, ``PolicyKeyRequired`` for an envelope
    without ``key``, ``PolicyNotSigned`` for a plain policy (or an envelope without signatures)
    with ``key``, ``PolicySignatureInvalid`` when no signature verifies under ``key``.
    """
    document = load_json_object(text, "Keylime runtime policy")
    notes: list[str] = []
    signed_by = None
    if is_dsse_envelope(document):
        if key is None:
            raise PolicyKeyRequired(
                "this Keylime policy is a DSSE-signed envelope: give the signer's public key to "
                "verify it (geoattest policy ima import --keylime-key KEY.pem)"
            )
        verified = open_keylime_envelope(document, key)
        try:
            payload = verified.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyInvalid("$.payload: the signed policy is not UTF-8 text") from None
        document = load_json_object(payload, "signed Keylime runtime policy")
        signed_by = verified.key_id
        notes.append(f"DSSE signature verified (signer key {signed_by})")
    elif key is not None:
        raise PolicyNotSigned(
            "a signed Keylime policy was asked for (a key was given) and this one is a plain, "
            "unsigned policy"
        )
    return _convert(document, notes, signed_by)


def _convert(
    document: Mapping[str, object], notes: list[str], signed_by: str | None
) -> KeylimeConversion:
    unknown = sorted(set(document) - _KEYLIME_KEYS)
    if unknown:
        raise PolicyInvalid(f"$: unknown Keylime policy key(s) {', '.join(map(repr, unknown))}")
    meta = document.get("meta")
    if not isinstance(meta, dict) or meta.get("version") != 1:
        raise PolicyInvalid("$.meta.version: only Keylime runtime policy version 1 is supported")
    regexes = _string_list(document.get("excludes", []), "$.excludes")
    for index, regex in enumerate(regexes):
        try:
            re.compile(regex)
        except re.error as e:
            raise PolicyInvalid(f"$.excludes[{index}]: not a regex: {e}") from None
    ima = document.get("ima", {})
    if not isinstance(ima, dict):
        raise PolicyInvalid("$.ima: expected an object")
    ignored = _string_list(ima.get("ignored_keyrings", []), "$.ima.ignored_keyrings")
    if ima.get("dm_policy") is not None:
        notes.append("ima.dm_policy dropped: device-mapper validation is not supported")
    if document.get("verification-keys"):
        notes.append(
            "verification-keys dropped: entries are allowed by digest only, a valid IMA "
            "signature alone does not allow a file"
        )
    policy = RuntimePolicy(
        digests=_table(document, "digests"),
        exclude_regexes=tuple(regexes),
        keyrings=_table(document, "keyrings"),
        ima_buf=_table(document, "ima-buf"),
        ignored_keyrings=frozenset(ignored),
        meta=(
            {"imported_from": "keylime runtime policy v1"}
            | ({"keylime_signer_key": signed_by} if signed_by else {})
        ),
    )
    return KeylimeConversion(policy=policy, notes=tuple(notes))


def import_keylime_policy(text: str) -> RuntimePolicy:
    """``convert_keylime_policy(text).policy`` (notes dropped; see the module docstring)."""
    return convert_keylime_policy(text).policy
