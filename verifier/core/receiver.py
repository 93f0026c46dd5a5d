"""The GNSS receiver check of a round: is the receiver the signed evidence names the enrolled one?

The agent enrols its receiver (``geofence.GnssReceiver``: source kind and identity banners; the
activation proof binds it to the TPM, the registrar's signed statement carries it to the
verifier). Every round's location evidence names the receiver its fix came from, signed by the
TPM-resident location key. ``check_receiver`` compares the two by fingerprint, on evidence whose
signature already verified, under the location policy's ``receiver`` rule:

* ``record`` (the default): a different receiver passes, and is reported as a
  ``ReceiverFinding`` on the location check's result in every such round; it is ``new`` when the
  previous passed round's receiver (the last evidence of the track) was another one, and then the
  round raises one ``gnss_receiver_changed`` notice event: one event per change, not per round.
* ``require``: a different receiver fails the location check (``gnss_receiver_changed``), and so
  does a receiver that cannot be told from another (``gnss_receiver_unidentified``: none was
  enrolled, or the enrolled or the round's receiver sends no identity banner).

An operator accepts a new receiver by re-enrolling the node (``agent enrol --gnss``, which binds
the new receiver to the TPM) and refreshing the agent on the verifier
(``POST /v1/agents/<id>/refresh``). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from geoattest.errors import GnssReceiverChanged, GnssReceiverUnidentified, PolicyInvalid
from geofence import GnssReceiver

__all__ = ["ReceiverFinding", "ReceiverRule", "change", "check_receiver", "receiver_rule"]


class ReceiverRule(StrEnum):
    RECORD = "record"  # a different receiver is recorded and raises an event; the round passes
    REQUIRE = "require"  # a different (or unidentifiable) receiver fails the location check


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverFinding:
    """A round's receiver that is not the enrolled one, under ``record``."""

    enrolled: GnssReceiver
    seen: GnssReceiver
    new: bool  # the previous passed round read another receiver: this round is the change

    def message(self) -> str:
        return (
            f"GNSS receiver changed: {change(self.enrolled, self.seen)} (recorded; the policy "
            "does not require the enrolled receiver)"
        )

    def details(self) -> dict[str, str]:
        return {
            "enrolled_receiver": self.enrolled.fingerprint().hex(),
            "receiver": self.seen.fingerprint().hex(),
        }


def change(enrolled: GnssReceiver, seen: GnssReceiver) -> str:
    """What differs between the enrolled receiver and the round's, bounded (node-made text)."""
    parts = []
    if seen.source is not enrolled.source:
        parts.append(f"read from {seen.source.value}, enrolled from {enrolled.source.value}")
    if not seen.identified:
        parts.append("the receiver sends no identity banner now")
    else:
        added = [text for text in seen.texts if text not in enrolled.texts]
        missing = [text for text in enrolled.texts if text not in seen.texts]
        if added:
            parts.append(f"new banner {_shown(added)}")
        if missing:
            parts.append(f"enrolled banner {_shown(missing)} missing")
        if not added and not missing and seen.texts != enrolled.texts:
            parts.append("the banners come in another order")
    return "; ".join(parts) + f" (enrolled receiver {enrolled.fingerprint().hex()[:16]})"


def _shown(texts: list[str]) -> str:
    return " | ".join(repr(text[:80]) for text in texts[:4]) + (" …" if len(texts) > 4 else "")


def receiver_rule(value: object) -> ReceiverRule:
    """The ``receiver`` setting of a location policy; ``PolicyInvalid`` for anything else."""
    if isinstance(value, str) and value in {rule.value for rule in ReceiverRule}:
        return ReceiverRule(value)
    raise PolicyInvalid(f'location policy: receiver must be "record" or "require", not {value!r}')


def check_receiver(
    *,
    seen: GnssReceiver,
    enrolled: GnssReceiver | None,
    previous: GnssReceiver | None,
    rule: ReceiverRule,
) -> ReceiverFinding | None:
    """Compare the round's receiver ``seen`` with the ``enrolled`` one (None: the agent enrolled
    none) under ``rule``; ``previous`` is the last passed round's receiver, if known.

    Returns a finding for a different receiver under ``record`` (None when it is the enrolled
    one, or when none was enrolled: nothing to compare). Raises ``GnssReceiverChanged`` or
    ``GnssReceiverUnidentified`` under ``require`` (see the module docstring)."""
    if rule is ReceiverRule.REQUIRE:
        if enrolled is None:
            raise GnssReceiverUnidentified(
                "the policy requires the enrolled GNSS receiver, and this agent enrolled none: "
                "re-enrol it with its receiver (agent enrol --gnss) and refresh it"
            )
        if not enrolled.identified or not seen.identified:
            which = "enrolled" if not enrolled.identified else "round's"
            raise GnssReceiverUnidentified(
                f"the policy requires the enrolled GNSS receiver, and the {which} receiver "
                f"sends no identity banner ({seen.describe()}): it cannot be told from another"
            )
    if enrolled is None or seen.same_as(enrolled):
        return None
    if rule is ReceiverRule.REQUIRE:
        raise GnssReceiverChanged(
            f"GNSS receiver changed: {change(enrolled, seen)}; the policy requires the enrolled "
            "receiver (re-enrol the node and refresh the agent to accept a new one)"
        )
    new = previous is None or not previous.same_as(seen)
    return ReceiverFinding(enrolled=enrolled, seen=seen, new=new)
