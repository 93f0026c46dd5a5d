"""``geoattest policy ima …``: import, generate and try out IMA runtime policies (local files only).

Format: ``docs/ima-policy.md``. Exit status as for every command: 0 fine, 2 refused (a policy
violation, a malformed log or policy: the error code is printed), 1 usage.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import click

from allowlists.ima.framing import split_log
from allowlists.ima.keylime_dsse import load_verification_key
from allowlists.ima.keylime_import import convert_keylime_policy
from allowlists.ima.policy import (
    RuntimePolicy,
    dump_runtime_policy,
    generate_policy,
    iter_runtime_policy_json,
    parse_runtime_policy,
)
from allowlists.ima.replay import ImaState, replay_and_check
from allowlists.ima.template import DIGEST_SIZES, parse_entry
from geoattest.cli import OutputPath, reports_errors
from geoattest.errors import ConfigurationError, PcrBankUnknown
from geoattest.pcr_banks import PcrBank, parse_bank
from geoattest.policy_scan import PolicyScan, ScanStats, read_mounts

PROGRESS_SECONDS = 1.0


@click.group()
def policy() -> None:
    """Verification policies."""


@policy.group()
def ima() -> None:
    """IMA runtime policies (which files and buffers a node may measure)."""


def _write(policy: RuntimePolicy, output: Path) -> None:
    if str(output) == "-":
        click.echo(dump_runtime_policy(policy), nl=False)
        return
    try:
        with output.open("w", encoding="utf-8") as f:
            f.writelines(iter_runtime_policy_json(policy))
    except OSError as e:
        raise ConfigurationError(f"cannot write {output}: {e.strerror or e}") from None


@ima.command("import")
@click.argument("keylime_policy", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=OutputPath(allow_dash=True), required=True, help="'-': stdout")
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
    _write(conversion.policy, output)
    click.echo(f"imported {len(conversion.policy.digests)} paths", err=True)


@ima.command("generate")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=OutputPath(allow_dash=True), required=True, help="'-': stdout")
@click.option("--exclude", "excludes", multiple=True, help="Glob to exclude (repeatable).")
@click.option("--alg", default="sha256", show_default=True, help="File digest algorithm.")
@click.option("--boot-aggregate", "boot_aggregate", multiple=True, help="Allowed alg:hex.")
@click.option(
    "--pseudo-fs/--no-pseudo-fs",
    "walk_pseudo",
    default=False,
    show_default=True,
    help="Also walk /proc, /sys, /dev, /run and pseudo-filesystem mounts (tmpfs, sysfs, ...).",
)
@reports_errors
def generate(
    root: Path,
    output: Path,
    excludes: tuple[str, ...],
    alg: str,
    boot_aggregate: tuple[str, ...],
    walk_pseudo: bool,
) -> None:
    """Build a policy allowing every regular file under ROOT (ROOT is the node's /).

    Pseudo filesystems are skipped; a symbolic link to a file is recorded under its own path
    too; excluded paths are not hashed and stay excluded. Unreadable files are counted and the
    first few named. Progress (files, bytes) goes to stderr. See docs/ima-policy.md.
    """
    if alg not in DIGEST_SIZES or alg not in hashlib.algorithms_available:
        raise click.BadParameter(f"unsupported digest algorithm {alg!r}", param_hint="--alg")
    if str(output) != "-" and not output.parent.is_dir():
        raise click.BadParameter(f"directory {output.parent} does not exist", param_hint="-o")
    progress = _Progress()
    scan = PolicyScan(
        root,
        alg=alg,
        is_excluded=RuntimePolicy(excludes=excludes).is_excluded,
        skip_pseudo=not walk_pseudo,
        mounts=read_mounts(),
        on_file=progress.update,
    )
    files = list(scan.files())
    progress.done(scan.stats)
    result = generate_policy(
        files,
        alg=alg,
        excludes=excludes,
        boot_aggregate=boot_aggregate,
        meta={"root": str(root.resolve())},
    )
    _write(result, output)
    for line in _report(scan.stats, len(result.digests)):
        click.echo(line, err=True)


class _Progress:
    """One progress line on stderr at most every ``PROGRESS_SECONDS`` (rewritten on a tty)."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._last = self._started
        self._tty = sys.stderr.isatty()

    def update(self, stats: ScanStats) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        line = f"hashed {stats.files:,} files, {_size(stats.bytes)}, {now - self._started:.0f} s"
        click.echo(f"\r{line}" if self._tty else line, err=True, nl=not self._tty)

    def done(self, stats: ScanStats) -> None:
        if self._tty:
            click.echo("", err=True)
        elapsed = time.monotonic() - self._started
        line = f"hashed {stats.files:,} files, {_size(stats.bytes)} in {elapsed:.1f} s"
        click.echo(line, err=True)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _report(stats: ScanStats, paths: int) -> list[str]:
    lines = [
        f"{paths:,} paths in the policy ({stats.links:,} of them symbolic links to files), "
        f"{stats.excluded:,} excluded, {stats.unreadable:,} unreadable"
    ]
    lines += [f"  unreadable: {example}" for example in stats.unreadable_examples]
    if stats.unreadable > len(stats.unreadable_examples):
        lines.append(f"  ... and {stats.unreadable - len(stats.unreadable_examples):,} more")
    lines += [f"not walked: {tree}" for tree in stats.skipped_trees]
    if stats.unresolved_links or stats.directory_links:
        lines.append(
            f"links not recorded: {stats.directory_links:,} to directories (their files are "
            f"recorded under the real path), {stats.unresolved_links:,} dangling, looping or "
            "into a skipped tree"
        )
    if stats.bad_names:
        lines.append(f"{stats.bad_names:,} file names are not UTF-8 and were left out")
    return lines


def _pcr_option(values: tuple[str, ...]) -> dict[PcrBank, bytes]:
    quoted: dict[PcrBank, bytes] = {}
    for value in values:
        name, _, hexd = value.partition(":")
        try:
            raw = bytes.fromhex(hexd)
            bank = parse_bank(name)
        except (ValueError, PcrBankUnknown):
            raise click.BadParameter(
                f"expected BANK:HEX, got {value!r}", param_hint="--pcr10"
            ) from None
        if bank.digest_size != len(raw):
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
    banks = tuple(quoted) or (PcrBank.SHA1, PcrBank.SHA256)
    if not quoted:
        values = {bank: bytes(bank.digest_size) for bank in banks}
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
