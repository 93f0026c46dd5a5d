"""Text that came from a peer, made safe to log, store and show.

An agent (or anything claiming to be one) chooses the bytes of its error codes, messages and
headers. Before any of it reaches a log line, a database column or an API answer it is bounded in
length and reduced to printable ASCII, so that it can neither break a write (a lone surrogate, an
over-long code) nor forge a log line (a newline). This module is a leaf: it imports nothing of ours.
"""

from __future__ import annotations

import re

MAX_CODE_CHARS = 64
MAX_TEXT_CHARS = 200
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def printable(value: object, limit: int = MAX_TEXT_CHARS) -> str:
    """``value`` as at most ``limit`` characters of printable ASCII; everything else escaped."""
    text = value if isinstance(value, str) else repr(value)
    out = []
    for char in text[: limit * 2]:
        if " " <= char <= "~":
            out.append(char)
        else:
            out.append(char.encode("unicode_escape", "backslashreplace").decode("ascii"))
    joined = "".join(out)
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def error_code(value: object) -> str | None:
    """A peer's error code if it looks like one of ours (snake_case, ≤ 64 chars), else ``None``."""
    if isinstance(value, str) and _CODE.match(value):
        return value
    return None
