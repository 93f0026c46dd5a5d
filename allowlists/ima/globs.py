"""Path globs of a runtime policy's ``excludes``, matched segment by segment.

A glob is matched against the whole path, one ``/``-separated segment at a time (policy
format version 2, ``docs/ima-policy.md``):

- ``*`` matches any run of characters within one segment (possibly empty), never ``/``;
- ``?`` matches one character other than ``/``;
- ``[abc]``, ``[a-z]``, ``[!abc]`` match one character of (not of) the set, never ``/``; a ``[``
  without its ``]`` is a literal ``[``, and ``[*]`` is a literal ``*``;
- ``**`` as a whole segment matches whole segments: ``/var/log/**`` everything below
  ``/var/log`` (not ``/var/log`` itself), ``/opt/**/cache`` a ``cache`` at any depth under
  ``/opt`` (``/opt/cache`` too), ``/**`` every absolute path. ``**`` inside a segment (``a**b``)
  is refused: it would mean the same as ``*`` and look like more;
- every other character is literal, the backslash included (file names may contain one).

Version 1 policies keep their old meaning (``fnmatch``: ``*`` crosses ``/``).

Whatever the glob or regex, a path that is not in normal form is never excluded
(``is_normal_path``): a ``.`` or ``..`` segment, an empty segment (``//``), a trailing ``/``. The
kernel logs absolute canonical paths (``d_absolute_path``) or a bare file name, never such a
form, so an entry that shows one was not written by it, and ``/tmp/../usr/bin/evil`` must not
pass a ``/tmp/*`` exclude. An empty path is not in normal form either.
"""

from __future__ import annotations

import fnmatch
import re

from geoattest.errors import PolicyInvalid

__all__ = ["glob_regex", "is_normal_path"]

_SEGMENT_CHAR = "[^/]"


def is_normal_path(path: str) -> bool:
    """True for an absolute path without ``.``, ``..`` or empty segments and no trailing ``/``,
    or for a single relative segment other than ``.``/``..`` (``boot_aggregate``, a basename)."""
    if not path:
        return False
    segments = path.split("/")
    if segments[0] == "":  # absolute: the first segment is the empty root
        segments = segments[1:]
        if not segments:
            return False  # "/" alone is no file
    elif len(segments) > 1:
        return False  # relative with a "/": the kernel never logs one
    return all(segment not in ("", ".", "..") for segment in segments)


def _class(glob: str, start: int) -> tuple[str, int] | None:
    """The regex of the ``[...]`` set starting at ``glob[start]`` and the index after it."""
    i = start + 1
    negate = i < len(glob) and glob[i] == "!"
    if negate:
        i += 1
    if i < len(glob) and glob[i] == "]":  # a leading ] is a member
        i += 1
    end = glob.find("]", i)
    if end < 0:
        return None
    body = glob[start + 1 + negate : end]
    escaped = "".join("\\" + c if c in "\\^[]" else c for c in body)
    # Keep "/" out of every set: a set matches one character of one segment.
    return (f"(?!/)[^{escaped}]" if negate else f"(?!/)[{escaped}]"), end + 1


def _segment(segment: str, where: str) -> str:
    if "**" in segment:
        raise PolicyInvalid(f"{where}: '**' must be a whole path segment, not part of {segment!r}")
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out.append(f"{_SEGMENT_CHAR}*")
        elif c == "?":
            out.append(_SEGMENT_CHAR)
        elif c == "[" and (found := _class(segment, i)) is not None:
            regex, i = found
            out.append(regex)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def glob_regex(glob: str, *, version: int = 2, where: str = "glob") -> str:
    """A regex (for ``re.fullmatch`` semantics: anchored with ``\\Z``) matching what ``glob``
    matches under the policy format ``version``. Raises PolicyInvalid for a malformed glob."""
    if version == 1:
        return fnmatch.translate(glob)
    if not glob:
        raise PolicyInvalid(f"{where}: empty glob")
    segments = glob.split("/")
    parts: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == "**":
            if index == last:
                # "/a/**": one or more segments below; "**" alone: any path.
                parts.append(f"{_SEGMENT_CHAR}+(?:/{_SEGMENT_CHAR}+)*")
            else:
                # "/a/**/b" and "**/b": zero or more whole segments, each followed by "/".
                parts.append(f"(?:{_SEGMENT_CHAR}+/)*")
            continue
        parts.append(_segment(segment, where))
        if index != last:
            parts.append("/")
    return "(?s:" + "".join(parts) + r")\Z"
