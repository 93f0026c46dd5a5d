from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allowlists.ima.framing import split_log
from allowlists.ima.keylime_import import import_keylime_policy
from allowlists.ima.policy import RuntimePolicy, generate_policy
from allowlists.ima.replay import ImaState, check_not_rewound, replay_and_check
from allowlists.ima.template import TEMPLATES, encode_entry, parse_entry
from geoattest.errors import (
    ImaEntryNotAllowed,
    ImaLogInvalid,
    ImaLogRewound,
    ImaPcrMismatch,
)
from geoattest.pcr_banks import PcrBank
from tests.unit.allowlists.ima.ima_vectors import (
    RUST_LOG,
    RUST_LOG_PCR10_SHA1,
    VERIFICATION,
    read,
    vector_lines,
)

ALLOW_ALL = RuntimePolicy(
    templates=frozenset(TEMPLATES),
    excludes=("/**", "*"),
    ignored_keyrings=frozenset({"*"}),
    allow_violations=True,
)
BOTH = (PcrBank.SHA1, PcrBank.SHA256)


def expected_pcr10(lines: Sequence[str], banks: Sequence[PcrBank] = BOTH) -> dict[PcrBank, bytes]:
    """Reference replay through the full parser (independent of the fast path)."""
    values = {bank: bytes(hashlib.new(bank).digest_size) for bank in banks}
    for number, line in enumerate(lines, start=1):
        entry = parse_entry(line, number)
        for bank in banks:
            values[bank] = hashlib.new(bank, values[bank] + entry.extend_value(bank)).digest()
    return values


def synthetic_log(count: int) -> tuple[list[str], RuntimePolicy]:
    files = [(f"/usr/bin/tool{i}", hashlib.sha256(b"%d" % i).digest()) for i in range(count)]
    lines = [encode_entry(path=path, digest=digest).line for path, digest in files]
    return lines, generate_policy(files)


@pytest.fixture(scope="module")
def rust_lines() -> list[str]:
    return split_log(read(RUST_LOG))


@pytest.fixture(scope="module")
def rust_policy(rust_lines: list[str]) -> RuntimePolicy:
    entries = [parse_entry(line) for line in rust_lines]
    return generate_policy([(e.path, e.digest) for e in entries], alg="sha1")


def test_real_log_from_zero_reproduces_the_derived_pcr10(
    rust_lines: list[str], rust_policy: RuntimePolicy
) -> None:
    quoted = {PcrBank.SHA1: bytes.fromhex(RUST_LOG_PCR10_SHA1)}
    result = replay_and_check(
        rust_lines, state=ImaState.initial([PcrBank.SHA1]), quoted_pcr10=quoted, policy=rust_policy
    )
    assert (result.consumed, result.remaining) == (826, 0)
    assert result.state.entries_verified == 826
    assert result.state.pcr10[PcrBank.SHA1].hex() == RUST_LOG_PCR10_SHA1


def test_real_log_in_both_banks(rust_lines: list[str], rust_policy: RuntimePolicy) -> None:
    quoted = expected_pcr10(rust_lines)
    result = replay_and_check(
        rust_lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=rust_policy
    )
    assert dict(result.state.pcr10) == quoted


@settings(max_examples=40, deadline=None)
@given(split=st.integers(min_value=0, max_value=826))
def test_split_at_any_line_and_continue(split: int) -> None:
    lines = split_log(read(RUST_LOG))
    final = expected_pcr10(lines)
    first_quote = expected_pcr10(lines[:split])
    # The agent quotes, then reads the whole log: lines after the quote come along.
    first = replay_and_check(
        lines, state=ImaState.initial(), quoted_pcr10=first_quote, policy=ALLOW_ALL
    )
    assert first.consumed == split
    assert first.remaining == 826 - split
    second = replay_and_check(
        lines[first.state.entries_verified :],
        state=first.state,
        quoted_pcr10=final,
        policy=ALLOW_ALL,
    )
    assert second.state.entries_verified == 826
    assert dict(second.state.pcr10) == final


def test_quoting_only_one_bank_still_tracks_the_other(rust_lines: list[str]) -> None:
    final = expected_pcr10(rust_lines)
    result = replay_and_check(
        rust_lines,
        state=ImaState.initial(),
        quoted_pcr10={PcrBank.SHA256: final[PcrBank.SHA256]},
        policy=ALLOW_ALL,
    )
    assert dict(result.state.pcr10) == final


def test_no_new_lines_and_unchanged_pcr_consumes_nothing() -> None:
    state = ImaState.initial()
    result = replay_and_check(
        ["garbage"], state=state, quoted_pcr10=dict(state.pcr10), policy=RuntimePolicy()
    )
    assert (result.consumed, result.remaining, result.state) == (0, 1, state)


def test_keylime_vectors_pass_with_their_policy_and_fail_with_an_empty_one() -> None:
    lines = vector_lines("measurements")
    quoted = expected_pcr10(lines)
    policy = import_keylime_policy(read(f"{VERIFICATION}/runtime_policy_test.json"))
    result = replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=policy)
    assert result.consumed == 3
    empty = import_keylime_policy(read("keylime/runtime_policy/sign/runtime-policy-empty.json"))
    with pytest.raises(ImaEntryNotAllowed, match="line 1: file 'boot_aggregate'"):
        replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=empty)


def test_keyring_buffer_checked_against_keyrings() -> None:
    lines = vector_lines("keyrings")
    quoted = expected_pcr10(lines)
    policy = import_keylime_policy(read(f"{VERIFICATION}/runtime_policy_test.json"))
    replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=policy)
    wrong = import_keylime_policy(read(f"{VERIFICATION}/runtime_policy_wrong.json"))
    with pytest.raises(ImaEntryNotAllowed, match=r"buffer '\.ima'") as caught:
        replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=wrong)
    assert caught.value.path == ".ima"


def test_signed_entries_allowed_by_digest_or_excludes() -> None:
    lines = vector_lines("signatures")
    quoted = expected_pcr10(lines)
    wrong = import_keylime_policy(read(f"{VERIFICATION}/runtime_policy_wrong.json"))
    with pytest.raises(ImaEntryNotAllowed, match="/usr/bin/dd"):
        replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=wrong)
    excluded = import_keylime_policy(
        read(f"{VERIFICATION}/runtime_policy_wrong_with_excludes.json")
    )
    replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=excluded)


# --- attacks ---------------------------------------------------------------------------------


def test_entry_not_in_policy_names_path_digest_and_line() -> None:
    lines, policy = synthetic_log(20)
    evil = encode_entry(path="/tmp/miner", digest=hashlib.sha256(b"evil").digest()).line
    lines.insert(12, evil)
    with pytest.raises(ImaEntryNotAllowed) as caught:
        replay_and_check(
            lines, state=ImaState.initial(), quoted_pcr10=expected_pcr10(lines), policy=policy
        )
    error = caught.value
    assert (error.path, error.line_number) == ("/tmp/miner", 13)
    assert error.digest == "sha256:" + hashlib.sha256(b"evil").hexdigest()
    assert "line 13" in error.message
    assert "/tmp/miner" in error.message
    assert error.digest in error.message
    assert error.code == "ima_entry_not_allowed"


def test_known_path_with_other_digest_is_refused() -> None:
    lines, policy = synthetic_log(5)
    lines.append(encode_entry(path="/usr/bin/tool1", digest=bytes(32)).line)
    with pytest.raises(ImaEntryNotAllowed, match="line 6: file '/usr/bin/tool1'"):
        replay_and_check(
            lines, state=ImaState.initial(), quoted_pcr10=expected_pcr10(lines), policy=policy
        )


def test_line_numbers_continue_from_the_state() -> None:
    lines, policy = synthetic_log(5)
    first = replay_and_check(
        lines, state=ImaState.initial(), quoted_pcr10=expected_pcr10(lines), policy=policy
    )
    evil = [encode_entry(path="/tmp/x", digest=bytes(32)).line]
    with pytest.raises(ImaEntryNotAllowed, match="line 6:"):
        replay_and_check(
            evil, state=first.state, quoted_pcr10=expected_pcr10(lines + evil), policy=policy
        )


def test_violation_after_the_quote_belongs_to_the_next_round() -> None:
    lines, policy = synthetic_log(8)
    quoted = expected_pcr10(lines)
    late = [*lines, encode_entry(path="/tmp/late", digest=bytes(32)).line]
    result = replay_and_check(late, state=ImaState.initial(), quoted_pcr10=quoted, policy=policy)
    assert (result.consumed, result.remaining) == (8, 1)


def test_pcr10_extended_without_a_log_entry_fails() -> None:
    lines, policy = synthetic_log(10)
    hidden = encode_entry(path="/tmp/hidden", digest=bytes(32)).line
    quoted = expected_pcr10([*lines, hidden])  # the TPM saw it, the log does not show it
    with pytest.raises(ImaPcrMismatch, match="never reproduces the quoted PCR 10"):
        replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=policy)
    assert ImaPcrMismatch.code == "ima_pcr_mismatch"
    assert issubclass(ImaPcrMismatch, ImaLogInvalid)


def test_pcr10_changed_with_no_lines_sent_fails() -> None:
    lines, policy = synthetic_log(3)
    with pytest.raises(ImaPcrMismatch, match="no new IMA lines"):
        replay_and_check(
            [], state=ImaState.initial(), quoted_pcr10=expected_pcr10(lines), policy=policy
        )


def test_removed_line_fails() -> None:
    lines, policy = synthetic_log(10)
    quoted = expected_pcr10(lines)
    del lines[4]
    with pytest.raises(ImaPcrMismatch):
        replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=policy)


def test_mismatch_report_mentions_an_uncovered_policy_violation() -> None:
    lines, policy = synthetic_log(4)
    quoted = expected_pcr10(lines)
    forged = [encode_entry(path="/tmp/forged", digest=bytes(32)).line, *lines[1:]]
    with pytest.raises(ImaPcrMismatch, match="line 1 was also not allowed"):
        replay_and_check(forged, state=ImaState.initial(), quoted_pcr10=quoted, policy=policy)


@pytest.mark.parametrize("banks", [(PcrBank.SHA256,), (PcrBank.SHA1,), BOTH])
def test_tampered_digest_is_detected(banks: tuple[PcrBank, ...]) -> None:
    lines, _ = synthetic_log(6)
    quoted = expected_pcr10(lines, banks)
    swapped = encode_entry(path="/usr/bin/tool2", digest=hashlib.sha256(b"3").digest()).line
    template_hash = lines[2].split(" ")[1]
    parts = swapped.split(" ")
    parts[1] = template_hash  # keep the original template hash, change the digest
    lines[2] = " ".join(parts)
    with pytest.raises(ImaLogInvalid, match="line 3: template hash mismatch"):
        replay_and_check(
            lines, state=ImaState.initial(banks), quoted_pcr10=quoted, policy=ALLOW_ALL
        )


def test_sha1_template_hash_checked_even_when_only_sha256_is_quoted() -> None:
    lines, policy = synthetic_log(3)
    quoted = expected_pcr10(lines, [PcrBank.SHA256])
    parts = lines[1].split(" ")
    parts[1] = "1" * 40  # data intact, so the sha256 bank alone would still match
    lines[1] = " ".join(parts)
    with pytest.raises(ImaLogInvalid, match="line 2: template hash mismatch"):
        replay_and_check(
            lines, state=ImaState.initial([PcrBank.SHA256]), quoted_pcr10=quoted, policy=policy
        )


def test_entry_for_another_pcr_is_refused() -> None:
    lines, policy = synthetic_log(2)
    lines[1] = "11" + lines[1][2:]
    with pytest.raises(ImaLogInvalid, match="line 2: PCR 11, expected 10"):
        replay_and_check(
            lines, state=ImaState.initial(), quoted_pcr10=expected_pcr10(lines), policy=policy
        )


def test_violations_extend_all_ones_and_need_policy() -> None:
    lines, policy = synthetic_log(3)
    parts = encode_entry(path="/var/log/syslog", digest=bytes(32)).line.split(" ")
    parts[1] = "0" * 40
    lines.insert(1, " ".join(parts))
    quoted = expected_pcr10(lines)
    with pytest.raises(ImaEntryNotAllowed, match="/var/log/syslog"):
        replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=policy)
    # The violation's path is unauthenticated (all-zero template hash): an exclude covering it
    # does not let it pass, or an attacker could relabel any violation as an excluded file.
    excluded = RuntimePolicy(digests=policy.digests, excludes=("/var/log/*",))
    with pytest.raises(ImaEntryNotAllowed, match="/var/log/syslog"):
        replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=excluded)
    allowed = RuntimePolicy(digests=policy.digests, allow_violations=True)
    result = replay_and_check(lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=allowed)
    assert result.consumed == 4


def test_slow_path_lines_replay_like_fast_ones() -> None:
    digest = hashlib.sha256(b"u").digest()
    upper = encode_entry(path="/usr/bin/u", digest=digest).line.upper().replace("IMA-NG", "ima-ng")
    upper = upper.replace("/USR/BIN/U", "/usr/bin/u").replace("SHA256", PcrBank.SHA256)
    odd = encode_entry(path="/opt/na\udcffme with space", digest=digest).line
    assert odd.endswith(" /opt/na\udcffme_with_space")  # the kernel writes a space as "_"
    lines = [upper, odd]
    policy = generate_policy([("/usr/bin/u", digest), ("/opt/na\udcffme_with_space", digest)])
    result = replay_and_check(
        lines, state=ImaState.initial(), quoted_pcr10=expected_pcr10(lines), policy=policy
    )
    assert result.consumed == 2


def test_untracked_bank_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="not tracked"):
        replay_and_check(
            [],
            state=ImaState.initial([PcrBank.SHA1]),
            quoted_pcr10={PcrBank.SHA256: bytes(32)},
            policy=ALLOW_ALL,
        )
    with pytest.raises(ValueError, match="unsupported PCR bank"):
        ImaState.initial(["md5"])  # type: ignore[list-item]  # a raw string past the type checker is refused at run time too
    with pytest.raises(ValueError, match="32 bytes"):
        ImaState(pcr10={PcrBank.SHA256: bytes(20)})


def test_check_not_rewound() -> None:
    check_not_rewound(entries_verified=10, first_entry_index=10, log_length=12)
    check_not_rewound(entries_verified=0, first_entry_index=0, log_length=0)
    with pytest.raises(ImaLogRewound, match="log now holds 5"):
        check_not_rewound(entries_verified=10, first_entry_index=5, log_length=5)
    with pytest.raises(ImaLogRewound, match="slice starts at entry 3"):
        check_not_rewound(entries_verified=10, first_entry_index=3, log_length=20)
    with pytest.raises(ImaLogInvalid, match=r"skipping entries 10\.\.11"):
        check_not_rewound(entries_verified=10, first_entry_index=12, log_length=20)


_ENTRY = st.builds(
    lambda template, i, violation: (template, i, violation),
    st.sampled_from(["ima-ng", "ima-sig", "ima-buf", "ima"]),
    st.integers(0, 5),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ENTRY, min_size=1, max_size=12))
def test_fast_path_agrees_with_the_reference_parser(
    specs: list[tuple[str, int, bool]],
) -> None:
    lines = []
    for template, i, violation in specs:
        alg = "sha1" if template == "ima" else "sha256"
        digest = hashlib.new(alg, b"%d" % i).digest()  # an ima-buf digest hashes its buffer
        line = encode_entry(
            template=template, path=f"/f{i}", digest=digest, digest_alg=alg, buffer=b"%d" % i
        ).line
        if violation:
            parts = line.split(" ")
            parts[1] = "0" * 40
            line = " ".join(parts)
        lines.append(line)
    quoted = expected_pcr10(lines)
    result = replay_and_check(
        lines, state=ImaState.initial(), quoted_pcr10=quoted, policy=ALLOW_ALL
    )
    assert dict(result.state.pcr10) == quoted
