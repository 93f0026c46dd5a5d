"""``geoattest policy ima …``: import, generate and try out IMA runtime policies (local files only).

Format: ``docs/ima-policy.md``. Exit status as for every command: 0 fine, 2 refused (a policy
violation, a malformed log or policy: the error code is printed), 1 usage.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import click

from allowlists.ima.keylime_dsse import load_verification_key
from allowlists.ima.keylime_import import convert_keylime_policy
from allowlists.ima.policy import (
    RuntimePolicy,
    dump_runtime_policy,
    generate_policy,
    parse_runtime_policy,
)
from allowlists.ima.replay import ImaState, replay_and_check
from allowlists.ima.template import BANK_SIZES, DIGEST_SIZES, parse_entry, split_log
from geoattest.cli import reports_errors
from geoattest.errors import ConfigurationError

PROGRESS_EVERY = 1_000


@click.group()
def policy() -> None:
    """Verification policies."""


@policy.group()
def ima() -> None:
    """IMA runtime policies (which files and buffers a node may measure)."""


def _write(text: str, output: Path) -> None:
    if str(output) == "-":
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@ima.command("import")
@click.argument("keylime_policy", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="'-': stdout")
@click.option(
    "--keylime-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="EC public key (PEM) or certificate of the signer: KEYLIME_POLICY must then be a "
    "DSSE-signed policy (keylime_sign_runtime_policy) whose signature verifies under it.",
)
@reports_errors
def import_policy(keylime_policy: Path, output: Path, keylime_key: Path | None) -> None:
    """Convert a Keylime runtime policy (JSON, meta.version 1; or DSSE-signed) into ours.

    A signed policy is imported only with --keylime-key, after its signature verified; with
    --keylime-key an unsigned policy is refused.
    """
    key = None
    if keylime_key is not None:
        try:
            key = load_verification_key(keylime_key.read_bytes())
        except ConfigurationError as e:
            raise ConfigurationError(f"--keylime-key {keylime_key}: {e.message}") from None
    conversion = convert_keylime_policy(keylime_policy.read_text(encoding="utf-8"), key=key)
    for note in conversion.notes:
        click.echo(f"note: {note}", err=True)
    _write(dump_runtime_policy(conversion.policy), output)
    click.echo(f"imported {len(conversion.policy.digests)} paths", err=True)


def _walk(root: Path, excluded: RuntimePolicy, stats: dict[str, int]) -> Iterator[Path]:
    """Regular files under ``root`` (symlinks not followed: IMA logs the real path)."""
    for directory, dirs, names in os.walk(root, onerror=lambda _e: _count(stats, "skipped")):
        dirs.sort()
        for name in sorted(names):
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            if excluded.is_excluded(_target_path(root, path)):
                stats["excluded"] += 1
                continue
            yield path


def _count(stats: dict[str, int], key: str) -> None:
    stats[key] += 1


def _target_path(root: Path, path: Path) -> str:
    """The path as the node's kernel logs it: relative to ROOT, made absolute."""
    return "/" + path.relative_to(root).as_posix()


@ima.command("generate")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="'-': stdout")
@click.option("--exclude", "excludes", multiple=True, help="Glob to exclude (repeatable).")
@click.option("--alg", default="sha256", show_default=True, help="File digest algorithm.")
@click.option("--boot-aggregate", "boot_aggregate", multiple=True, help="Allowed alg:hex.")
@reports_errors
def generate(
    root: Path, output: Path, excludes: tuple[str, ...], alg: str, boot_aggregate: tuple[str, ...]
) -> None:
    """Build a policy allowing every regular file under ROOT (paths taken relative to ROOT).

    Excluded paths are not hashed and stay excluded in the policy. Unreadable files are skipped
    and counted. Progress goes to stderr every 1,000 files.
    """
    if alg not in DIGEST_SIZES or alg not in hashlib.algorithms_available:
        raise click.BadParameter(f"unsupported digest algorithm {alg!r}", param_hint="--alg")
    root = root.resolve()
    stats = {"hashed": 0, "skipped": 0, "excluded": 0}
    matcher = RuntimePolicy(excludes=excludes)
    files: list[tuple[str, bytes]] = []
    for path in _walk(root, matcher, stats):
        try:
            with path.open("rb") as f:
                digest = hashlib.file_digest(f, alg).digest()
        except OSError:
            stats["skipped"] += 1
            continue
        files.append((_target_path(root, path), digest))
        stats["hashed"] += 1
        if stats["hashed"] % PROGRESS_EVERY == 0:
            click.echo(f"hashed {stats['hashed']:,} files", err=True)
    result = generate_policy(
        files, alg=alg, excludes=excludes, boot_aggregate=boot_aggregate, meta={"root": str(root)}
    )
    _write(dump_runtime_policy(result), output)
    click.echo(
        f"hashed {stats['hashed']:,} files, skipped {stats['skipped']:,} unreadable, "
        f"{stats['excluded']:,} excluded",
        err=True,
    )


def _pcr_option(values: tuple[str, ...]) -> dict[str, bytes]:
    quoted: dict[str, bytes] = {}
    for value in values:
        bank, _, hexd = value.partition(":")
        try:
            raw = bytes.fromhex(hexd)
        except ValueError:
            raw = b""
        if BANK_SIZES.get(bank) != len(raw):
            raise click.BadParameter(f"expected BANK:HEX, got {value!r}", param_hint="--pcr10")
        quoted[bank] = raw
    return quoted


@ima.command("check")
@click.argument("policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("log", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pcr10", multiple=True, help="Quoted PCR 10 as BANK:HEX (default: log's own).")
@reports_errors
def check(policy_file: Path, log: Path, pcr10: tuple[str, ...]) -> None:
    """Replay LOG from zero against POLICY_FILE; report the first entry it does not allow.

    Without --pcr10 every line is checked; with it, replay stops where PCR 10 is reproduced.
    """
    runtime_policy = parse_runtime_policy(policy_file.read_text(encoding="utf-8"))
    lines = split_log(log.read_text(encoding="utf-8", errors="surrogateescape"))
    quoted = _pcr_option(pcr10)
    banks = tuple(quoted) or ("sha1", "sha256")
    if not quoted:
        values = {bank: bytes(BANK_SIZES[bank]) for bank in banks}
        for number, line in enumerate(lines, start=1):
            entry = parse_entry(line, number)
            for bank in banks:
                values[bank] = hashlib.new(bank, values[bank] + entry.extend_value(bank)).digest()
        quoted = values
    result = replay_and_check(
        lines, state=ImaState.initial(banks), quoted_pcr10=quoted, policy=runtime_policy
    )
    shown = " ".join(f"{bank}:{value.hex()}" for bank, value in result.state.pcr10.items())
    click.echo(f"ok: {result.consumed} entries allowed, PCR 10 {shown}")
    if result.remaining:
        click.echo(f"({result.remaining} lines after the quoted PCR 10 not checked)", err=True)
