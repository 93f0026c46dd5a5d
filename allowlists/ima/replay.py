"""Incremental IMA replay: which new log lines the quote covers, and are they all allowed?

A round gives the lines the agent read *after* quoting, starting at the last verified entry.
``replay_and_check`` extends them one by one into every bank the state tracks and stops at the
first prefix whose running PCR 10 equals the quoted value in every quoted bank; the lines after
it were measured after the quote and belong to the next round. Only the consumed lines must be
allowed by the policy. Errors, most specific first when several apply:

- ``ImaLogInvalid``: a consumed line is malformed, its sha1 template hash does not match its
  template data, or it names a PCR other than 10.
- ``ImaPcrMismatch`` (``ima_pcr_mismatch``, a kind of ``ImaLogInvalid``): no prefix reproduces the
  quoted PCR 10. PCR 10 was extended without a log entry, or lines were removed or altered. When
  this happens policy violations are not reported on their own: the lines are not covered by the
  quote, so the message only mentions the first one.
- ``ImaEntryNotAllowed``: a consumed entry is not allowed by the policy (first one wins): its
  template is not one the node logs or its label is ambiguous (``allowlists.ima.labels``), or
  nothing in the policy allows it.

Cost is O(new lines): the state carries the running PCR values. Canonical ``ima-ng`` lines (when
the node logs ``ima-ng``) go through an inlined fast path; anything else (other templates,
violations, uppercase hex, odd paths) through ``template.parse_entry``, which is the reference
and raises the precise error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from allowlists.ima.labels import label_problem
from allowlists.ima.policy import RuntimePolicy
from allowlists.ima.template import DIGEST_SIZES, ImaEntry, parse_entry
from geoattest.errors import ImaEntryNotAllowed, ImaLogInvalid, ImaLogRewound, ImaPcrMismatch
from geoattest.pcr_banks import BANK_DIGEST_SIZES, PcrBank

IMA_PCR = 10
DEFAULT_BANKS = (PcrBank.SHA1, PcrBank.SHA256)

# Per digest algorithm: the length-prefixed "alg:\0" head of the d-ng field, and the hex length.
_DNG_HEAD: dict[str, tuple[bytes, int]] = {
    alg: ((len(alg) + 2 + size).to_bytes(4, "little") + alg.encode() + b":\0", 2 * size)
    for alg, size in DIGEST_SIZES.items()
}
_ZERO_TEMPLATE_HASH = "0" * 40
_LEN = [n.to_bytes(4, "little") for n in range(4097)]  # n-ng lengths (PATH_MAX + NUL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImaState:
    """What the verifier remembers between rounds: entries verified and PCR 10 per bank."""

    entries_verified: int = 0
    pcr10: Mapping[PcrBank, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for bank, value in self.pcr10.items():
            size = BANK_DIGEST_SIZES.get(bank)
            if size != len(value) or not isinstance(bank, PcrBank):
                raise ValueError(f"PCR 10 {bank!r} value must have {size} bytes")
        object.__setattr__(self, "pcr10", MappingProxyType(dict(self.pcr10)))

    @classmethod
    def initial(cls, banks: Sequence[PcrBank] = DEFAULT_BANKS) -> ImaState:
        """The state at boot: nothing verified, PCR 10 all zeros in each bank. Raises
        ``ValueError`` for a value that is no ``PcrBank`` (a caller past the type checker)."""
        for bank in banks:
            if not isinstance(bank, PcrBank):
                raise ValueError(f"unsupported PCR bank {bank!r}")
        return cls(pcr10={bank: bytes(bank.digest_size) for bank in banks})


@dataclass(frozen=True, slots=True, kw_only=True)
class ImaResult:
    """The outcome of a round's replay: the new state and how many given lines the quote covers."""

    state: ImaState
    consumed: int
    remaining: int
    """Lines given but measured after the quote (the next round starts with them)."""


def check_not_rewound(*, entries_verified: int, first_entry_index: int, log_length: int) -> None:
    """Check the agent's log slice starts where we stopped and the log did not shrink.

    ``first_entry_index`` is the 0-based index of the first line the agent sent (it must equal
    ``entries_verified``); ``log_length`` the number of entries the agent's log holds. After a
    reboot the caller starts from ``ImaState.initial()`` instead. Raises ``ImaLogRewound`` for a
    shorter log or a slice starting before the verified entries, ``ImaLogInvalid`` for a slice
    starting beyond them (entries skipped).
    """
    if log_length < entries_verified:
        raise ImaLogRewound(
            f"IMA log rewound: {entries_verified} entries verified, the log now holds {log_length}"
        )
    if first_entry_index < entries_verified:
        raise ImaLogRewound(
            f"IMA log rewound: slice starts at entry {first_entry_index}, "
            f"{entries_verified} entries already verified"
        )
    if first_entry_index > entries_verified:
        raise ImaLogInvalid(
            f"IMA log slice starts at entry {first_entry_index}, skipping entries "
            f"{entries_verified}..{first_entry_index - 1}"
        )


def _not_allowed(entry: ImaEntry, policy: RuntimePolicy) -> str | None:
    """Why ``entry`` is not allowed (``""``: the policy lists nothing that allows it), or None."""
    problem = label_problem(entry, policy.templates)
    if problem is not None:
        return problem
    if entry.is_violation:
        # A violation's template hash is all zeros: its path and digest are authenticated by
        # nothing, so an attacker could relabel it as any allowed file. Judge the event itself.
        return None if policy.allow_violations else "violations are not allowed"
    if entry.template == "ima-buf":
        allowed = policy.allows_buffer(entry.path, entry.digest_text)
    else:
        allowed = policy.allows_file(entry.path, entry.digest_text)
    return None if allowed else ""


def _refusal(
    line_number: int, path: str, digest_text: str, template: str, why: str = ""
) -> ImaEntryNotAllowed:
    what = "buffer" if template == "ima-buf" else "file"
    because = f": {why}" if why else " by the runtime policy"
    return ImaEntryNotAllowed(
        f"IMA line {line_number}: {what} {path[:300]!r} with digest {digest_text} "
        f"is not allowed{because}",
        path=path,
        digest=digest_text,
        line_number=line_number,
    )


def replay_and_check(
    lines: Sequence[str],
    *,
    state: ImaState,
    quoted_pcr10: Mapping[PcrBank, bytes],
    policy: RuntimePolicy,
    first_line_number: int | None = None,
) -> ImaResult:
    """Replay ``lines`` from ``state`` until PCR 10 equals ``quoted_pcr10``; check the policy.

    ``quoted_pcr10`` maps banks to the quoted PCR 10 values; every quoted bank must be
    tracked by ``state`` (``ValueError`` otherwise: a caller bug). ``first_line_number``
    (1-based, default ``state.entries_verified + 1``) only numbers lines in messages.
    Raises ``ImaLogInvalid``, ``ImaPcrMismatch`` or ``ImaEntryNotAllowed`` (module docstring).
    """
    for bank in quoted_pcr10:
        if bank not in state.pcr10:
            raise ValueError(
                f"quoted bank {bank} is not tracked by the IMA state {tuple(state.pcr10)}"
            )
    if not quoted_pcr10:
        raise ValueError("no quoted PCR 10 value to replay against")
    start = state.entries_verified + 1 if first_line_number is None else first_line_number
    # Bank 0 is a quoted bank (sha256 preferred): it is compared after every line, the others
    # only when it matches.
    banks = sorted(state.pcr10, key=lambda b: (b not in quoted_pcr10, b != "sha256", b))
    values = [state.pcr10[bank] for bank in banks]
    targets = [quoted_pcr10.get(bank) for bank in banks]
    if _reproduces(values, targets):
        return ImaResult(state=state, consumed=0, remaining=len(lines))
    if not lines:
        raise ImaPcrMismatch(
            f"PCR 10 changed since entry {state.entries_verified} but no new IMA lines were sent: "
            "PCR 10 was extended without a log entry"
        )

    h0 = getattr(hashlib, banks[0])
    v0, t0, ones0 = values[0], targets[0], b"\xff" * len(values[0])
    first_is_sha1 = banks[0] == "sha1"
    extra = [
        (i, getattr(hashlib, bank), b"\xff" * len(values[i]), bank == "sha1")
        for i, bank in enumerate(banks)
        if i
    ]
    sha1, join, dng_head, lens = hashlib.sha1, b"".join, _DNG_HEAD, _LEN
    digests = policy.digests
    fast_ng = policy.logs("ima-ng")
    empty: frozenset[str] = frozenset()
    refused: ImaEntryNotAllowed | None = None
    th: hashlib._Hash | None = None
    consumed = 0
    for consumed, line in enumerate(lines, start=1):
        data = None
        try:
            pcr, th_text, template, dtext, path = line.split(" ", 4)
            if template == "ima-ng" and pcr == "10" and fast_ng and "\0" not in path:
                alg, _, hexd = dtext.partition(":")
                head, hexlen = dng_head[alg]
                digest = bytes.fromhex(hexd)
                if 2 * len(digest) == hexlen == len(hexd):
                    name = path.encode()
                    data = join((head, digest, lens[len(name) + 1], name, b"\0"))
                    th = sha1(data)
                    if th.hexdigest() != th_text:
                        data = None
        except (KeyError, ValueError, IndexError):
            data = None
        if data is None:  # anything but a canonical ima-ng line: the reference parser decides
            entry = parse_entry(line, start + consumed - 1)
            if entry.pcr != IMA_PCR:
                raise ImaLogInvalid(f"line {entry.line_number}: PCR {entry.pcr}, expected 10")
            data = entry.template_data
            th = None if entry.is_violation else sha1(data)
            if refused is None and (why := _not_allowed(entry, policy)) is not None:
                refused = _refusal(
                    entry.line_number, entry.path, entry.digest_text, entry.template, why
                )
        elif (
            dtext not in digests.get(path, empty)
            and refused is None
            and not policy.allows_file(path, dtext)  # excludes, uppercase hex
        ):
            refused = _refusal(start + consumed - 1, path, dtext, "ima-ng")
        if th is None:
            extend = ones0
        elif first_is_sha1:
            extend = th.digest()
        else:
            extend = h0(data).digest()
        v0 = h0(v0 + extend).digest()
        for i, hasher, ones, is_sha1 in extra:
            extend = ones if th is None else (th.digest() if is_sha1 else hasher(data).digest())
            values[i] = hasher(values[i] + extend).digest()
        if v0 == t0:
            values[0] = v0
            if _reproduces(values, targets):
                break
    else:
        note = f"; line {refused.line_number} was also not allowed by the policy" if refused else ""
        raise ImaPcrMismatch(
            f"IMA replay of lines {start}..{start + len(lines) - 1} never reproduces the quoted "
            f"PCR 10 ({', '.join(f'{b}:{v.hex()}' for b, v in sorted(quoted_pcr10.items()))}): "
            f"PCR 10 was extended without a log entry, or the log was altered{note}"
        )
    if refused is not None:
        raise refused
    new_state = ImaState(
        entries_verified=state.entries_verified + consumed,
        pcr10=dict(zip(banks, values, strict=True)),
    )
    return ImaResult(state=new_state, consumed=consumed, remaining=len(lines) - consumed)


def _reproduces(values: Sequence[bytes], targets: Sequence[bytes | None]) -> bool:
    return all(t is None or t == v for t, v in zip(targets, values, strict=True))
