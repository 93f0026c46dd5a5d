"""The GNSS receiver an agent reads its fixes from, as a typed value with a stable fingerprint.

A receiver is identified by what it says about itself and by how it is read:

* ``source``: the kind of source (:class:`SourceKind`: ``file`` replay, ``serial`` port,
  ``gpsd``), signed into every location evidence v3;
* ``texts``: the receiver's identity banners (``$--TXT`` lines such as u-blox's
  ``HW UBX-M8030 00080000`` / ``FW …`` / ``PROTVER=…`` / ``MOD=…``, ST's ``$PSTMVER``), in order
  of first sight, exactly as ``geofence.epochs`` collects them into ``Fix.receiver`` and as the
  evidence's ``receiver`` field carries them (joined with ``" | "``);
* ``device``: where the agent reads it (serial path or URL, ``gpsd`` host:port, capture path).
  Recorded at enrolment for the operator; *not* part of the fingerprint, because the per-round
  evidence does not carry it (and a receiver moved to another USB port is the same receiver).

:meth:`GnssReceiver.fingerprint` covers ``source`` and the joined ``texts``, i.e. exactly what
each round's signed evidence shows, so the verifier compares the enrolled receiver with every
round's by fingerprint. A receiver that sends no identity banner is *unidentified*
(``texts == ()``): a valid value, not an error; two unidentified receivers of one source kind
are indistinguishable, which is why a policy that requires the enrolled receiver refuses them.

What it proves, and what not: the identity is reported by the agent (the agent's own software
reads the banners), so it is as good as the node's software, which the quote and IMA vouch for.
It travels in the enrolment request, which the activation proof binds to the TPM, and in the
location evidence, which the TPM-resident location key signs: nobody but the node can claim or
change it. It does not prove that the receiver is genuine: a receiver (or a spoofer wired in its
place) can print any banner it likes. Swapping the receiver is what it reveals.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from geofence.evidence import LocationEvidence, SourceKind

__all__ = ["IDENTITY_SEPARATOR", "MAX_RECEIVER_TEXTS", "GnssReceiver"]

IDENTITY_SEPARATOR = " | "  # how ``Fix.receiver`` / the evidence's ``receiver`` joins the texts
MAX_RECEIVER_TEXTS = 16  # as ``geofence.epochs`` keeps at most
_FINGERPRINT_PREFIX = b"geoattest-gnss-receiver-v1\x00"
_MODEL = re.compile(r"^(?:MOD=|HW )\s*(.+)$")
_FIRMWARE = re.compile(r"^(?:FWVER=|FW |SW |ROM CORE |PSTMVER BINIMG_)\s*(.+)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class GnssReceiver:
    """One GNSS receiver as enrolled or as seen in a round (see the module docstring)."""

    source: SourceKind
    texts: tuple[str, ...] = ()
    device: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", SourceKind(self.source))
        # Normalised as the evidence carries it: joined, then split again.
        object.__setattr__(self, "texts", _split(IDENTITY_SEPARATOR.join(self.texts)))

    @classmethod
    def from_evidence(cls, evidence: LocationEvidence) -> GnssReceiver:
        """The receiver a round's (v3) evidence names. ``ValueError`` when it names no source
        kind (v1/v2 evidence, which the verifier refuses before it gets here)."""
        if evidence.source is None:
            raise ValueError("location evidence before v3 names no source kind")
        return cls(source=SourceKind(evidence.source), texts=_split(evidence.receiver))

    @property
    def identified(self) -> bool:
        return bool(self.texts)

    @property
    def identity(self) -> str:
        """The texts as the evidence's ``receiver`` field carries them (``""``: unidentified)."""
        return IDENTITY_SEPARATOR.join(self.texts)

    @property
    def model(self) -> str | None:
        """The hardware/model banner, when the receiver sends one (``MOD=`` or ``HW``)."""
        return _first(_MODEL, self.texts)

    @property
    def firmware(self) -> str | None:
        """The firmware banner, when the receiver sends one (``FWVER=``, ``FW``, ``SW``, …)."""
        return _first(_FIRMWARE, self.texts)

    def fingerprint(self) -> bytes:
        """SHA-256 over ``"geoattest-gnss-receiver-v1" ‖ 0x00 ‖ source ‖ 0x00 ‖ identity``
        (UTF-8): the same for the enrolled receiver and every round that reads it."""
        body = self.source.value.encode() + b"\x00" + self.identity.encode("utf-8")
        return hashlib.sha256(_FINGERPRINT_PREFIX + body).digest()

    def same_as(self, other: GnssReceiver) -> bool:
        return self.fingerprint() == other.fingerprint()

    def describe(self) -> str:
        """One line for messages and events (bounded: the texts come from the node)."""
        what = self.identity[:200] if self.identified else "unidentified"
        return f"{self.source.value} receiver {what!r}"


def _split(identity: str) -> tuple[str, ...]:
    return tuple(identity.split(IDENTITY_SEPARATOR)) if identity else ()


def _first(pattern: re.Pattern[str], texts: tuple[str, ...]) -> str | None:
    for text in texts:
        if match := pattern.match(text):
            return match.group(1).strip()
    return None
