"""Where one entry of ``ascii_runtime_measurements`` ends, when a name holds a newline.

The kernel prints names raw (``allowlists.ima.template``), so a file named ``"a\\nb"`` spreads its
entry over two lines of the file, and a name such as ``"x\\n10 <hash> ima-ng sha256:<hex> /ok"``
even makes its second half look like an entry of its own. Any local user can create such a
name; if the agent split at every newline, the verifier would see a line whose template hash
does not match and revoke an honest node.

The template hash says where the entry ends: starting at a line that opens like an entry
(``PCR HASH TEMPLATE ``), ``frame_lines`` takes the shortest run of lines whose join by ``\\n``
parses with a matching template hash. A run the hash cannot settle is left as it is, one line
per line, for the verifier to judge:

- a line of a template this module does not parse (it cannot be checked here);
- a violation (template hash printed as zeros: nothing to check against): it takes the lines
  after it that do not open like an entry (a violation's name is unauthenticated anyway);
- no run of lines within ``MAX_JOIN_CHARS`` verifies (a broken or tampered log).

Getting a shorter run to verify as well would take a sha1 second preimage of the template data.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from allowlists.ima.template import TEMPLATES, ImaEntry, parse_entry
from geoattest.errors import ImaLogInvalid

__all__ = ["MAX_JOIN_CHARS", "frame_lines", "parse_log", "split_entries", "split_log"]

MAX_JOIN_CHARS = 4096 + 256 * 1024  # PATH_MAX of name, and room for an ima-buf hex field
_HEAD = re.compile(r" ?[0-9]{1,2} (?P<hash>[0-9a-f]{40}) (?P<template>[^ \n]+) ")
_ZERO_HASH = "0" * 40


def _verifies(text: str) -> bool:
    try:
        return not parse_entry(text, verify=True).is_violation
    except ImaLogInvalid:
        return False


def _span(lines: Sequence[str], start: int) -> int:
    """How many lines, from ``lines[start]``, the entry starting there spans (module docstring)."""
    head = _HEAD.match(lines[start])
    if head is None or head["template"] not in TEMPLATES:
        return 1
    size, end = 0, start + 1
    if head["hash"] == _ZERO_HASH:
        while end < len(lines) and _HEAD.match(lines[end]) is None:
            size += len(lines[end]) + 1
            if size > MAX_JOIN_CHARS:
                break
            end += 1
        return end - start
    if _verifies(lines[start]):
        return 1
    text = lines[start]
    for end in range(start + 1, len(lines)):
        size += len(lines[end]) + 1
        if size > MAX_JOIN_CHARS:
            break
        text += "\n" + lines[end]
        if _verifies(text):
            return end - start + 1
    return 1


def frame_lines(lines: Sequence[str]) -> list[str]:
    """The entries in these lines of the file (without their final newline), in order."""
    entries: list[str] = []
    start = 0
    while start < len(lines):
        span = _span(lines, start)
        entries.append("\n".join(lines[start : start + span]))
        start += span
    return entries


def split_entries(data: bytes) -> list[bytes]:
    """The entries of complete log bytes (each line ends in ``\\n``), byte for byte."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    text = [line.decode("utf-8", "surrogateescape") for line in lines]
    return [entry.encode("utf-8", "surrogateescape") for entry in frame_lines(text)]


def split_log(text: str) -> list[str]:
    """Split ``ascii_runtime_measurements`` text (decoded with ``surrogateescape``) into entries;
    no final empty line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return frame_lines(lines)


def parse_log(text: str, *, first_line_number: int = 1) -> list[ImaEntry]:
    """Parse a whole ``ascii_runtime_measurements`` text (see ``template.parse_entry``); entries
    are numbered in order from ``first_line_number``."""
    return [
        parse_entry(line, number)
        for number, line in enumerate(split_log(text), start=first_line_number)
    ]
