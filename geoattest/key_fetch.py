"""The workload's side of key release: a PoG token bound to a fresh key, a proof, the JWE.

Run by the workload process itself (``geoattest keys fetch|open``), so the agent names this
process's executable in the token. Two fresh P-256 keys live only in this process: the ``cnf``
key (proves possession to the agent and to the key service) and the wrapping key (the key
service encrypts the model key to it).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import (
    GeoattestError,
    JoseMalformed,
    VerifierUnreachable,
    error_from_code,
)
from geoattest.jose import b64url_decode, decrypt_ecdh_es, json_object
from geoattest.wire_tokens import WorkloadTokenRequest, make_cnf
from geoattest.workload_client import request_token
from keyrelease.app import POP_HEADER
from keyrelease.release import make_proof, release_path

__all__ = ["fetch_model_key"]


def fetch_model_key(
    *, socket_path: Path, service_url: str, key_id: str, audience: str, timeout: float = 30.0
) -> bytes:
    """The 32-byte model key ``key_id``, released to this process; raises the refusal."""
    cnf_key = ec.generate_private_key(ec.SECP256R1())
    wrap_key = ec.generate_private_key(ec.SECP256R1())
    now = time.time()
    cnf = make_cnf(
        cnf_key,
        audience=audience,
        kind="pog",
        now=dt.datetime.fromtimestamp(now, dt.UTC),
    )
    view = request_token(
        socket_path,
        WorkloadTokenRequest(type="pog", audience=audience, cnf=cnf),
        timeout=timeout,
    )
    pop = make_proof(cnf_key, token=view.token, key_id=key_id, wrap=wrap_key.public_key(), now=now)
    url = service_url.rstrip("/") + release_path(key_id)
    try:
        response = requests.post(
            url,
            headers={"Authorization": f"PoG {view.token}", POP_HEADER: pop},
            timeout=timeout,
        )
    except requests.RequestException as e:
        raise VerifierUnreachable(f"key service at {service_url}: {e}") from e
    if response.status_code != 200:
        raise _refusal(response)
    plain = json_object(decrypt_ecdh_es(response.json()["jwe"], wrap_key), "released key")
    if (
        plain.get("kid") != key_id
        or plain.get("kty") != "oct"
        or not isinstance(plain.get("k"), str)
    ):
        raise JoseMalformed("the key service answered with another key")
    return b64url_decode(str(plain["k"]), "model key")


def _refusal(response: requests.Response) -> GeoattestError:
    try:
        error = response.json()["error"]
        return error_from_code(str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return VerifierUnreachable(f"key service answered {response.status_code}")
