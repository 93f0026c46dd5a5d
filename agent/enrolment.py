"""The agent's side of enrolment: identity from the TPM, then the MakeCredential challenge answered.

1. Read the EK certificate from NV, recreate the EK public area, load or create the AK.
2. Post them to the registrar; it answers with a credential encrypted to the EK for the AK's name.
3. ActivateCredential in the TPM recovers the secret (only possible with both keys in this TPM).
4. Send ``activation_proof(secret, enrolment_digest(body))``, an HMAC keyed with the secret over
   the canonical digest of the JSON object posted in step 2; the registrar records the identity.

With an ``ApiEndpoint`` the request also carries the URL of the agent's evidence API and the DER
of its TLS server certificate, which the verifier pins. With a ``location_key_handle`` (nodes with
a GNSS receiver) it also carries the TPM-resident location key, created if absent and certified by
the AK (``agent.location.ensure_location_key``); the registrar records it once the AK is proven.
With a ``gnss_receiver`` (``agent.gnss.identify``) it names the GNSS receiver the node reads; the
activation proof binds it with the rest of the request, and the verifier compares it with the
receiver each round's signed location evidence names (docs/location-policy.md).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from agent.gnss.identify import receiver_wire
from agent.location import LocationKeyTpm, ensure_location_key
from agent.registrar_client import RegistrarClient
from geoattest.log import bound
from geoattest.wire import (
    AgentView,
    EnrolRequest,
    activation_proof,
    enrolment_body,
    enrolment_digest,
)
from geofence import GnssReceiver

log = logging.getLogger(__name__)


class EnrollableTpm(LocationKeyTpm, Protocol):
    """What enrolment needs from a TPM (``agent.tpm_device.TpmDevice`` provides it)."""

    def read_ek_certificate(self) -> bytes: ...

    def ek_public(self) -> bytes: ...

    def ensure_ak(self, handle: int = ..., alg: Literal["ecc", "rsa"] = ...) -> bytes: ...

    def activate_credential(
        self, credential_blob: bytes, encrypted_secret: bytes, *, ak_handle: int = ...
    ) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AkSpec:
    """Where the AK is kept (persistent handle) and which kind to create when there is none."""

    handle: int = 0x81010002
    algorithm: Literal["ecc", "rsa"] = "ecc"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiEndpoint:
    """Where the verifier reaches the agent's evidence API, and its TLS certificate (DER)."""

    url: str
    tls_certificate: bytes


def default_agent_id(ek_certificate: bytes) -> str:
    """A stable agent id derived from the EK certificate, for nodes that are not given one."""
    return "ek-" + hashlib.sha256(ek_certificate).hexdigest()[:16]


def enrol(
    device: EnrollableTpm,
    registrar: RegistrarClient,
    agent_id: str | None,
    ak: AkSpec = AkSpec(),  # frozen value object, safe as a default
    *,
    endpoint: Callable[[str], ApiEndpoint] | None = None,
    location_key_handle: int | None = None,
    gnss_receiver: GnssReceiver | None = None,
) -> AgentView:
    """Run the whole enrolment; returns the registrar's record of the now active agent.

    ``endpoint`` maps the agent id (known only once the EK certificate is read) to the API
    endpoint to register; without it the agent enrols its identity only. ``location_key_handle``
    (nodes that give location evidence) is where the location key lives or is created;
    ``gnss_receiver`` the receiver they read (unidentified is fine: it is recorded as such).

    Raises the registrar's refusal (``EkUntrusted``, ``EkNotPinned``, ``AkInvalid``,
    ``ActivationFailed``, ``AgentIdTaken``, ``LocationKeyInvalid``…), ``RegistrarUnreachable``
    (also ``RegistrarBusy``), ``RegistrarAnswerInvalid`` (an answer about another agent id),
    ``TpmUnavailable``, or ConfigurationError when the location key handle holds an unfit key.
    """
    ek_certificate = device.read_ek_certificate()
    agent_id = agent_id or default_agent_id(ek_certificate)
    with bound(agent_id=agent_id):
        api = endpoint(agent_id) if endpoint is not None else None
        ak_public = device.ensure_ak(ak.handle, ak.algorithm)
        location_key = None
        if location_key_handle is not None:
            location_key = ensure_location_key(
                device, handle=location_key_handle, ak_handle=ak.handle, agent_id=agent_id
            )
        request = EnrolRequest(
            agent_id=agent_id,
            ek_certificate=ek_certificate,
            ek_public=device.ek_public(),
            ak_public=ak_public,
            agent_url=api.url if api else None,
            tls_certificate=api.tls_certificate if api else None,
            location_key=location_key,
            gnss_receiver=receiver_wire(gnss_receiver) if gnss_receiver is not None else None,
        )
        log.info("enrolling with the registrar")
        answer = registrar.enrol(request)
        secret = device.activate_credential(
            answer.challenge.credential_blob,
            answer.challenge.encrypted_secret,
            ak_handle=ak.handle,
        )
        # What the client posted is ``enrolment_body(request)``: the proof binds exactly that.
        digest = enrolment_digest(enrolment_body(request))
        view = registrar.activate(agent_id, activation_proof(secret, digest))
        log.info("enrolment complete: state %s", view.state)
        return view
