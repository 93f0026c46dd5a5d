"""NMEA 0183 lines → typed sentence records, never raising on bad input.

Framing and checksums are checked as ``pynmea2.parse(line, check=True)`` checks them; the fields
of the sentences geoattest uses (RMC, GGA, GNS, GSA, GSV, VTG, GST, TXT, ZDA, GLL, any talker) are
converted strictly by :mod:`geofence._fields`, **lazily**, as pynmea2 does: on the first use of
:attr:`Sentence.body`. What the reader does with each input line:

* ``#`` lines are comments (gpsd capture headers) and blank lines are skipped, not errors.
* CR/LF are stripped. Everything before the *last* ``$`` is dropped (``$`` only ever starts a
  sentence), which resynchronises a doubled ``$$`` as gpsd does; such lines count as ``resynced``.
* A sentence with no checksum, a wrong checksum or broken framing is counted in
  :class:`ParseStats` with its line number and skipped (``parse`` returns ``None``).
* A malformed field is found when the sentence is converted: :meth:`Sentence.checked_body`
  returns ``None`` and moves the sentence from ``accepted`` to ``rejected`` (``bad_field``) in
  the parser's statistics, with its own line number. The epoch assembler converts every sentence
  through it before using it, so a bad field never reaches a fix and is always counted;
  :func:`parse_lines` does the same for every sentence it returns.
* Proprietary ``$P...`` sentences are recorded (:class:`Proprietary`, with the manufacturer) but
  carry no position data; standard sentences of other types (RMB, BOD, GBS...) are ``ignored``.

Fast path: a line shaped ``$TTSSS,data*HH`` with an upper-case alphanumeric talker (not ``P``),
a sentence type we convert and two hex checksum digits is framed and checksummed here, exactly as
pynmea2's regular expression and checksum would (a subset of what it accepts, same result); every
other line goes through ``pynmea2.parse``. Either way the fields are then split on ``,`` as
pynmea2 splits them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
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


class Sentence:
    """One accepted sentence: its line number, its text after resync, talker, type and body.

    The body is converted from the raw fields on first use. :attr:`body` raises
    :class:`~geofence._fields.FieldError` (a ValueError) for a malformed field;
    :meth:`checked_body` instead returns ``None`` and has the parser count the rejection.
    """

    __slots__ = ("_body", "_data", "_on_bad_field", "kind", "line_no", "talker", "text")

    def __init__(
        self,
        *,
        line_no: int,
        text: str,
        talker: str,  # "GP", "GN", ...; "P" for proprietary
        kind: str,  # "RMC", ...; the manufacturer code for proprietary
        body: Body | None = None,
        data: str | list[str] | None = None,  # raw fields (text after the type word, or split)
        on_bad_field: Callable[[Sentence, f.FieldError], None] | None = None,
    ) -> None:
        if body is None and data is None:
            raise ValueError("a Sentence needs a body or its raw fields")
        self.line_no, self.text, self.talker, self.kind = line_no, text, talker, kind
        self._body, self._data, self._on_bad_field = body, data, on_bad_field

    @property
    def body(self) -> Body:
        """The typed body (converted once); FieldError when a field is malformed."""
        body = self._body
        if body is None:
            data = self._data
            fields = data.split(",") if isinstance(data, str) else data
            assert fields is not None  # noqa: S101 - __init__ requires body or data
            body = self._body = CONVERTERS[self.kind](fields)
        return body

    def checked_body(self) -> Body | None:
        """The body, or ``None`` for a malformed field (counted as rejected by the parser once)."""
        try:
            return self.body
        except f.FieldError as e:
            callback, self._on_bad_field = self._on_bad_field, None
            if callback is not None:
                callback(self, e)
            return None

    def __repr__(self) -> str:
        return f"Sentence(line_no={self.line_no}, text={self.text!r})"


# Everything pynmea2 may raise on hostile input: its own errors subclass ValueError; the others
# come from proprietary sentence constructors indexing short data.
_PARSE_ERRORS = (ValueError, TypeError, IndexError, KeyError, AttributeError)


_HEX = "0123456789ABCDEFabcdef"
_HEX_PAIRS = frozenset(a + b for a in _HEX for b in _HEX)
_FAST_KINDS = frozenset(CONVERTERS)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TALKERS = frozenset(a + b for a in _ALNUM.replace("P", "") for b in _ALNUM)


def _xor_checksum(body: str) -> int:
    """XOR of the characters of ``body`` (ASCII), folding the bytes as one integer."""
    raw = body.encode("ascii")
    value, width = int.from_bytes(raw, "little"), len(raw)
    while width > 1:
        half = (width + 1) // 2
        bits = 8 * half
        value = (value >> bits) ^ (value & ((1 << bits) - 1))
        width = half
    return value


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

    def _reject(self, reason: RejectReason, detail: str, line_no: int | None = None) -> None:
        self._c["rejected"] += 1
        if len(self._rejections) < MAX_REJECTIONS_KEPT:
            number = self._c["lines"] if line_no is None else line_no
            self._rejections.append(Rejection(line_no=number, reason=reason, detail=detail[:120]))

    def _bad_field(self, sentence: Sentence, error: f.FieldError) -> None:
        """A sentence accepted by framing turned out to hold a malformed field."""
        self._c["accepted"] -= 1
        self._reject(RejectReason.BAD_FIELD, f"{error}: {sentence.text}", sentence.line_no)

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
        body = text[1:star]
        kind = body[2:5]
        if (
            kind in _FAST_KINDS
            and body[5:6] == ","
            and body[:2] in _TALKERS
            and "*" not in body
            and text[star + 1 :] in _HEX_PAIRS
        ):
            if int(text[star + 1 :], 16) != _xor_checksum(body):
                self._reject(RejectReason.BAD_CHECKSUM, text)
                return None
            c["accepted"] += 1
            return Sentence(
                line_no=c["lines"],
                text=text,
                talker=body[:2],
                kind=kind,
                data=body[6:],
                on_bad_field=self._bad_field,
            )
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
        if kind not in CONVERTERS:
            c["accepted"] += 1
            c["ignored"] += 1
            return None
        c["accepted"] += 1
        return Sentence(
            line_no=c["lines"],
            text=text,
            talker=msg.talker,
            kind=kind,
            data=list(msg.data),
            on_bad_field=self._bad_field,
        )


def parse_lines(lines: Iterable[bytes | str]) -> tuple[list[Sentence], ParseStats]:
    """Parse a whole capture and convert every sentence; returns the sentences whose fields are
    well formed and the statistics (bad fields counted)."""
    parser = NmeaParser()
    out = [s for s in map(parser.parse, lines) if s is not None and s.checked_body() is not None]
    return out, parser.stats()


def split_lines(data: bytes) -> list[bytes]:
    """Split a raw capture on LF (CR is stripped by the parser; mixed endings are fine)."""
    return data.split(b"\n")
