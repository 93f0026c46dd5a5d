"""Replaying a capture as if live: cut it into epochs and restamp each epoch to a given time.

Pure (lines and a time in, lines out). The agent's live replay source (``file:PATH?live``) and
the tests' live receivers use it to turn a recorded track into fresh fixes: a demo or a test
needs a position now, and plausibility refuses stale or future fixes. Only the time and date
fields change (and the checksum with them); positions, satellites and C/N0 stay as recorded.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

__all__ = ["epochs", "restamped", "time_of"]

# Where each sentence type's time field is (the epoch-closing, timed sentences).
_TIME_FIELD = {b"RMC": 1, b"GGA": 1, b"GNS": 1, b"GST": 1, b"ZDA": 1, b"GLL": 5}


def _fields(line: bytes) -> list[bytes] | None:
    """The comma fields of a ``$…*HH`` sentence (any run of leading ``$``), or None."""
    text = line.rstrip(b"\r")
    if not text.startswith(b"$"):
        return None
    body, star, _ = text.lstrip(b"$").partition(b"*")
    return body.split(b",") if star else None


def time_of(line: bytes) -> bytes | None:
    """The time field of a timed sentence (``hhmmss.ss``), or None for any other line."""
    fields = _fields(line)
    if fields is None or fields[0][2:5] not in _TIME_FIELD:
        return None
    index = _TIME_FIELD[fields[0][2:5]]
    return fields[index] if len(fields) > index and fields[index] else None


def epochs(lines: Sequence[bytes]) -> list[list[bytes]]:
    """The capture cut into epochs (lines sharing one receiver time); lines before the first
    timed sentence (the receiver's banner) belong to the first epoch. Blank lines and ``#``
    comments are dropped."""
    groups: list[list[bytes]] = [[]]
    current: bytes | None = None
    for line in lines:
        if not line.strip() or line.startswith(b"#"):
            continue
        time = time_of(line)
        if time is not None and current is not None and time != current:
            groups.append([])
        if time is not None:
            current = time
        groups[-1].append(line)
    return [group for group in groups if group]


def restamped(line: bytes, at: dt.datetime) -> bytes:
    """``line`` with its time (and date) fields set to ``at`` (UTC); other lines unchanged."""
    fields = _fields(line)
    if fields is None or time_of(line) is None:
        return line
    kind = fields[0][2:5]
    fields[_TIME_FIELD[kind]] = f"{at:%H%M%S}.{at.microsecond // 10_000:02d}".encode()
    if kind == b"RMC" and len(fields) > 9:
        fields[9] = f"{at:%d%m%y}".encode()
    if kind == b"ZDA" and len(fields) > 4:
        fields[2:5] = [f"{at:%d}".encode(), f"{at:%m}".encode(), f"{at:%Y}".encode()]
    body = b",".join(fields)
    checksum = functools.reduce(lambda a, b: a ^ b, body, 0)
    return b"$" + body + b"*" + f"{checksum:02X}".encode()
