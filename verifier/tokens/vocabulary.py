"""The words a token speaks: its type (PoR, PoG) and profile, EAR's status tiers, the AR4SI
trustworthiness values geoattest uses, and how a workload's executable was measured."""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["PROFILES", "EarStatus", "TokenType", "Trust", "WorkloadMeasure"]


class TokenType(StrEnum):
    POR = "por"  # Proof-of-Residency: this code runs unmodified on a genuine, attested host
    POG = "pog"  # Proof-of-Geofencing: PoR, and that host is inside zone Z

    @property
    def typ(self) -> str:
        """The JWS header ``typ`` (explicit typing, RFC 8725 section 3.11)."""
        return f"{self.value}+jwt"

    @property
    def profile(self) -> str:
        return PROFILES[self]


PROFILES = {
    TokenType.POR: "tag:geoattest.dev,2026:eat/por/v1",
    TokenType.POG: "tag:geoattest.dev,2026:eat/pog/v1",
}


class EarStatus(StrEnum):
    """EAR appraisal status tiers (``ear.status``), weakest last."""

    AFFIRMING = "affirming"
    WARNING = "warning"
    CONTRAINDICATED = "contraindicated"
    NONE = "none"

    @property
    def rank(self) -> int:
        """Higher is stronger: affirming 3, warning 2, contraindicated 1, none 0."""
        return _RANK[self]


_RANK = {
    EarStatus.AFFIRMING: 3,
    EarStatus.WARNING: 2,
    EarStatus.CONTRAINDICATED: 1,
    EarStatus.NONE: 0,
}


class Trust(IntEnum):
    """AR4SI trustworthiness claim values geoattest uses (draft-ietf-rats-ar4si section 2.3)."""

    NO_CLAIM = 0
    AFFIRMING = 2  # e.g. executables: only approved executables were loaded
    WARNING = 32  # e.g. executables: loaded, but the verifier cannot vouch for this one
    UNRECOGNIZED = 33  # executables: runtime includes executables that are not recognised

    @property
    def tier(self) -> EarStatus:
        if self is Trust.NO_CLAIM:
            return EarStatus.NONE
        if self.value < 32:
            return EarStatus.AFFIRMING
        if self.value < 96:
            return EarStatus.WARNING
        return EarStatus.CONTRAINDICATED


class WorkloadMeasure(StrEnum):
    """How the workload's executable hash is known, strongest first."""

    IMA_ALLOWLISTED = "ima-allowlisted"  # this boot's verified IMA log measured it; policy lists it
    IMA_EXCLUDED = "ima-excluded"  # measured by IMA, but under a path the policy excludes
    AGENT = "agent"  # hashed by the agent from /proc/<pid>/exe; IMA did not vouch for it
