"""IMA replay + runtime-policy check, entries/s: ours vs Keylime vs a bare Python replay loop.

One run, one generated log: 100,000 real-format ``ima-ng`` lines (sha256 file digests, sha1
template hashes) and a policy allowing every file. Measured, best of ``REPEATS``:

- ours, full: ``replay_and_check`` from zero against the sha256 PCR 10 (as Keylime), policy
  checked, sha1 template hash of every line verified; also with both sha1 and sha256 banks;
- ours, incremental: one round of 100 new lines on top of the verified 100,000;
- Keylime 7.14.3: ``keylime.ima.ima.process_measurement_list(None, lines, policy, pcr_hex,
  hash_alg=Hash.SHA256)`` with ``ima.empty_policy()`` filled in, run in ``bench/.venv-peers``
  (``bench/peers/setup.sh``) on the same files, timing read back as JSON;
- bare: the least a correct sha256 replay does in Python (rebuild template data, two sha256),
  no policy, no template-hash check.

Run: ``bash bench/peers/setup.sh && .venv/bin/python bench/bench_ima.py`` (about 10 s).
"""

from __future__ import annotations

import gc
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from geoattest.pcr_banks import PcrBank

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from allowlists.ima.policy import dump_runtime_policy, generate_policy, parse_runtime_policy
from allowlists.ima.replay import ImaState, replay_and_check
from allowlists.ima.template import encode_entry

ENTRIES = 100_000
NEW_ENTRIES = 100
REPEATS = 3
PEERS = Path(__file__).resolve().parent / ".venv-peers" / "bin" / "python"
KEYLIME_RUNNER = Path(__file__).resolve().parent / "peers" / "keylime_ima.py"


def make_log(count: int, offset: int = 0) -> tuple[list[str], list[tuple[str, bytes]]]:
    """``count`` ima-ng lines with distinct paths and sha256 digests, like a busy host's log."""
    lines: list[str] = []
    files: list[tuple[str, bytes]] = []
    for i in range(offset, offset + count):
        path = f"/usr/lib/x86_64-linux-gnu/pkg{i % 97}/lib{i}.so.{i % 7}"
        digest = hashlib.sha256(f"file {i}".encode()).digest()
        lines.append(encode_entry(path=path, digest=digest).line)
        files.append((path, digest))
    return lines, files


def bare_replay(lines: list[str], pcr: bytes) -> bytes:
    """A minimal correct sha256-bank replay of ima-ng lines: no checks at all."""
    sha256 = hashlib.sha256
    for line in lines:
        _, _, _, digest_text, path = line.split(" ", 4)
        alg, _, hexd = digest_text.partition(":")
        head = alg.encode() + b":\0" + bytes.fromhex(hexd)
        name = path.encode() + b"\0"
        data = b"".join(
            (len(head).to_bytes(4, "little"), head, len(name).to_bytes(4, "little"), name)
        )
        pcr = sha256(pcr + sha256(data).digest()).digest()
    return pcr


def best_of(repeats: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def keylime_seconds(log: Path, digests: Path, pcr_hex: str) -> float | None:
    if not PEERS.exists():
        print("keylime: skipped, run bench/peers/setup.sh first", file=sys.stderr)
        return None
    args = [str(PEERS), str(KEYLIME_RUNNER), str(log), str(digests), pcr_hex, str(REPEATS)]
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["failure"] or result["entries"] != ENTRIES:
        raise SystemExit(f"keylime did not accept the log: {result}")
    return float(result["best_seconds"])


def main() -> None:
    lines, files = make_log(ENTRIES)
    new_lines, new_files = make_log(NEW_ENTRIES, offset=ENTRIES)
    sha256_pcr = bare_replay(lines, bytes(32))
    sha256_after = bare_replay(new_lines, sha256_pcr)
    text = dump_runtime_policy(generate_policy(files + new_files))
    policy = parse_runtime_policy(text)  # the verifier's path: JSON text in
    sha1_pcr = bytes(20)
    for line in lines:
        sha1_pcr = hashlib.sha1(sha1_pcr + bytes.fromhex(line.split(" ", 2)[1])).digest()  # noqa: S324 - the PCR bank

    gc.disable()
    results: dict[str, float] = {}
    quoted = {PcrBank.SHA256: sha256_pcr}
    ours = best_of(
        REPEATS,
        lambda: replay_and_check(
            lines, state=ImaState.initial([PcrBank.SHA256]), quoted_pcr10=quoted, policy=policy
        ),
    )
    results["ours, sha256 bank"] = ENTRIES / ours
    both = {PcrBank.SHA1: sha1_pcr, PcrBank.SHA256: sha256_pcr}
    ours_both = best_of(
        REPEATS,
        lambda: replay_and_check(
            lines,
            state=ImaState.initial([PcrBank.SHA1, PcrBank.SHA256]),
            quoted_pcr10=both,
            policy=policy,
        ),
    )
    results["ours, sha1+sha256 banks"] = ENTRIES / ours_both
    state = replay_and_check(
        lines, state=ImaState.initial([PcrBank.SHA256]), quoted_pcr10=quoted, policy=policy
    ).state
    incremental = best_of(
        200,
        lambda: replay_and_check(
            new_lines, state=state, quoted_pcr10={PcrBank.SHA256: sha256_after}, policy=policy
        ),
    )
    results[f"ours, incremental round of {NEW_ENTRIES}"] = NEW_ENTRIES / incremental
    bare = best_of(REPEATS, lambda: bare_replay(lines, bytes(32)))
    results["bare replay loop (no checks)"] = ENTRIES / bare
    gc.enable()

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "ascii_runtime_measurements"
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        digests = Path(tmp) / "digests.json"
        digests.write_text(json.dumps({path: [d.hex()] for path, d in files}), encoding="utf-8")
        peer = keylime_seconds(log, digests, sha256_pcr.hex())
    if peer is not None:
        results["keylime process_measurement_list"] = ENTRIES / peer

    keylime_rate = results.get("keylime process_measurement_list")
    print(f"IMA replay + policy, {ENTRIES:,} ima-ng entries (sha256 digests), best of {REPEATS}")
    for name, rate in results.items():
        ratio = f"{rate / keylime_rate:5.2f}x keylime" if keylime_rate else ""
        print(f"  {name:<40} {rate:>12,.0f} entries/s  {ratio}")
    print(f"  incremental round of {NEW_ENTRIES}: {incremental * 1e6:,.0f} us")


if __name__ == "__main__":
    main()
