"""Everything one round needs, from the worker's cached fleet configuration."""

from __future__ import annotations

from dataclasses import dataclass

from geofence import GnssReceiver
from tpm import TpmPublic
from verifier.core.policy import AttestationPolicy
from verifier.storage.sql import AgentTarget


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundTarget:
    """Everything one round needs, from the worker's cached fleet configuration."""

    target: AgentTarget
    ak: TpmPublic
    policy: AttestationPolicy
    location_key: TpmPublic | None = None
    receiver: GnssReceiver | None = None  # the GNSS receiver enrolled at the registrar
