"""Framing ``ascii_runtime_measurements`` into entries when names hold newlines: the template
hash decides where an entry ends, so a name can neither split its own entry nor swallow the
next one."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from allowlists.ima.framing import frame_lines, parse_log, split_entries, split_log
from allowlists.ima.template import encode_entry


def entry(path: str, template: str = "ima-ng") -> str:
    return encode_entry(template=template, path=path, digest=hashlib.sha256(b"x").digest()).line


def violation(path: str) -> str:
    pcr, _, rest = entry(path).split(" ", 2)
    return f"{pcr} {'0' * 40} {rest}"


def test_each_line_is_an_entry_when_no_name_holds_a_newline() -> None:
    lines = [entry("/a"), entry("/b", "ima-sig"), entry("/c")]
    assert frame_lines(lines) == lines


def test_newlines_in_names_stay_inside_their_entry() -> None:
    names = ["/tmp/a\nb", "/tmp/\n", "/tmp/\n\n\nx", "\n"]
    entries = [entry(name, template) for name in names for template in ("ima-ng", "ima-sig")]
    text = "".join(e + "\n" for e in entries)
    assert split_log(text) == entries
    assert [e.path for e in parse_log(text)] == [n for n in names for _ in (1, 2)]


def test_a_name_imitating_the_next_entry_does_not_swallow_it() -> None:
    real = entry("/usr/bin/ok")
    tricky = entry("/tmp/x\n" + real)  # its name ends with a copy of the next line
    text = "".join(e + "\n" for e in (tricky, real, real))
    assert split_log(text) == [tricky, real, real]


def test_a_violation_takes_the_lines_that_do_not_open_an_entry() -> None:
    lines = [violation("/var/log/a\nb"), entry("/c")]
    text = "".join(line + "\n" for line in lines)
    assert split_log(text) == lines


def test_what_cannot_be_verified_is_left_line_by_line() -> None:
    unknown = "10 " + "ab" * 20 + " ima-ngv2 sha256:00 /x"
    broken = entry("/a").replace("/a", "/b")
    lines = [unknown, "continuation", broken, "garbage", entry("/c")]
    assert frame_lines(lines) == lines


def test_split_entries_is_byte_exact() -> None:
    names = [b"/tmp/caf\xe9", b"/tmp/x\ny\xff", b"/usr/bin/a"]
    raws = [
        encode_entry(path=n.decode("utf-8", "surrogateescape"), digest=bytes(32)).raw for n in names
    ]
    assert split_entries(b"".join(r + b"\n" for r in raws)) == raws


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b),
        min_size=1,
        max_size=8,
    )
)
def test_any_names_frame_back_exactly(names: list[bytes]) -> None:
    raws = [
        encode_entry(path=n.decode("utf-8", "surrogateescape"), digest=bytes(32)).raw for n in names
    ]
    assert split_entries(b"".join(r + b"\n" for r in raws)) == raws
