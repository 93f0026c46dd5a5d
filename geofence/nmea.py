"""NMEA 0183 lines → typed sentence records, never raising on bad input.

Framing and checksums are checked by ``pynmea2.parse(line, check=True)``; the fields of the
sentences geoattest uses (RMC, GGA, GNS, GSA, GSV, VTG, GST, TXT, ZDA, GLL, any talker) are then
converted strictly by :mod:`geofence._fields`. What the reader does with each input line:

* ``#`` lines are comments (gpsd capture headers) and blank lines are skipped, not errors.
* CR/LF are stripped. Everything before the *last* ``$`` is dropped (``$`` only ever starts a
  sentence), which resynchronises a doubled ``$$`` as gpsd does; such lines count as ``resynced``.
* A sentence with no checksum, a wrong checksum, broken framing, or a malformed field is counted
  in :class:`ParseStats` with its line number and skipped.
* Proprietary ``$P...`` sentences are recorded (:class:`Proprietary`, with the manufacturer) but
  carry no position data; standard sentences of other types (RMB, BOD, GBS...) are ``ignored``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import pynmea2

from geofence import _fields as f
from geofence.sentences import (
    CONVERTERS,
    Body,
    Proprietary,
)

MAX_LINE_CHARS = (
    512  # NMEA says 82; u-blox/ST NMEA 4.x lines run longer. Anything past this is junk.
)
MAX_REJECTIONS_KEPT = 1000


class RejectReason(enum.StrEnum):
    NOT_ASCII = "not_ascii"
    TOO_LONG = "too_long"
    NOT_NMEA = "not_nmea"
    NO_CHECKSUM = "no_checksum"
    BAD_CHECKSUM = "bad_checksum"
    MALFORMED = "malformed"
    BAD_FIELD = "bad_field"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    line_no: int
    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseStats:
    """What the reader saw. ``rejections`` keeps the first 1000 rejected lines (1-based numbers)."""

    lines: int = 0
    comments: int = 0
    blank: int = 0
    accepted: int = 0
    resynced: int = 0
    proprietary: int = 0
    ignored: int = 0
    rejected: int = 0
    rejections: tuple[Rejection, ...] = ()

    def count(self, reason: RejectReason) -> int:
        """Rejected lines with ``reason`` (among those kept)."""
        return sum(1 for r in self.rejections if r.reason is reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sentence:
    """One accepted sentence: its line number, its text after resync, talker, type and body."""

    line_no: int
    text: str
    talker: str  # "GP", "GN", ...; "P" for proprietary
    kind: str  # "RMC", ...; the manufacturer code for proprietary
    body: Body


# Everything pynmea2 may raise on hostile input: its own errors subclass ValueError; the others
# come from proprietary sentence constructors indexing short data.
_PARSE_ERRORS = (ValueError, TypeError, IndexError, KeyError, AttributeError)


_COUNTERS = (
    "lines",
    "comments",
    "blank",
    "accepted",
    "resynced",
    "proprietary",
    "ignored",
    "rejected",
)


class NmeaParser:
    """Streaming line parser: feed lines in order; it numbers them and keeps the statistics."""

    def __init__(self) -> None:
        self._c = dict.fromkeys(_COUNTERS, 0)
        self._rejections: list[Rejection] = []

    def stats(self) -> ParseStats:
        """A snapshot of the counters so far."""
        c = self._c
        return ParseStats(
            lines=c["lines"],
            comments=c["comments"],
            blank=c["blank"],
            accepted=c["accepted"],
            resynced=c["resynced"],
            proprietary=c["proprietary"],
            ignored=c["ignored"],
            rejected=c["rejected"],
            rejections=tuple(self._rejections),
        )

    def _reject(self, reason: RejectReason, detail: str) -> None:
        self._c["rejected"] += 1
        if len(self._rejections) < MAX_REJECTIONS_KEPT:
            self._rejections.append(
                Rejection(line_no=self._c["lines"], reason=reason, detail=detail[:120])
            )

    def parse(self, line: bytes | str) -> Sentence | None:
        """Parse one line; ``None`` for comments, blanks and rejected lines (which are counted)."""
        c = self._c
        c["lines"] += 1
        if isinstance(line, bytes):
            if line[:1] == b"#":  # comment headers may hold UTF-8 names; never decoded
                c["comments"] += 1
                return None
            try:
                line = line.decode("ascii")
            except UnicodeDecodeError:
                self._reject(RejectReason.NOT_ASCII, repr(line[:60]))
                return None
        text = line.strip("\r\n")
        if not text.strip():
            c["blank"] += 1
            return None
        if text[0] == "#":
            c["comments"] += 1
            return None
        if len(text) > MAX_LINE_CHARS or not text.isascii():
            self._reject(RejectReason.TOO_LONG if text.isascii() else RejectReason.NOT_ASCII, text)
            return None
        start = text.rfind("$")
        if start < 0:
            self._reject(RejectReason.NOT_NMEA, text)
            return None
        if start > 0:
            c["resynced"] += 1
            text = text[start:]
        star = text.rfind("*")
        if star < 0 or star == len(text) - 1:
            self._reject(RejectReason.NO_CHECKSUM, text)
            return None
        if len(text) - star != 3:
            self._reject(RejectReason.MALFORMED, text)
            return None
        return self._sentence(text)

    def _sentence(self, text: str) -> Sentence | None:
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError:
            self._reject(RejectReason.BAD_CHECKSUM, text)
            return None
        except _PARSE_ERRORS:
            self._reject(RejectReason.MALFORMED, text)
            return None
        c = self._c
        if isinstance(msg, pynmea2.ProprietarySentence):
            c["accepted"] += 1
            c["proprietary"] += 1
            maker = str(msg.manufacturer)
            return Sentence(
                line_no=c["lines"],
                text=text,
                talker="P",
                kind=maker,
                body=Proprietary(manufacturer=maker),
            )
        kind = getattr(msg, "sentence_type", "")
        converter = CONVERTERS.get(kind)
        if converter is None:
            c["accepted"] += 1
            c["ignored"] += 1
            return None
        try:
            body = converter(msg.data)
        except f.FieldError as e:
            self._reject(RejectReason.BAD_FIELD, f"{e}: {text}")
            return None
        c["accepted"] += 1
        return Sentence(line_no=c["lines"], text=text, talker=msg.talker, kind=kind, body=body)


def parse_lines(lines: Iterable[bytes | str]) -> tuple[list[Sentence], ParseStats]:
    """Parse a whole capture; returns the accepted sentences and the statistics."""
    parser = NmeaParser()
    out = [s for s in map(parser.parse, lines) if s is not None]
    return out, parser.stats()


def split_lines(data: bytes) -> list[bytes]:
    """Split a raw capture on LF (CR is stripped by the parser; mixed endings are fine)."""
    return data.split(b"\n")
