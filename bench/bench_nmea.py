"""NMEA sentences/s: geofence's parser (and full fix assembly) vs bare ``pynmea2.parse``.

All ten captures in tests/vectors/nmea, comment lines dropped for the bare run (ours skips
them itself). Bare: ``pynmea2.parse(line, check=True)`` in a try/except on the stripped str
lines. Ours: ``NmeaParser.parse`` on the raw bytes lines (decode, resync, checksum, strict field
conversion, statistics); and ``fixes_from_lines`` (parse + epochs + fixes + digests).

Run: ``.venv/bin/python bench/bench_nmea.py`` (about 10 s).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from pathlib import Path

import pynmea2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geofence.epochs import fixes_from_lines
from geofence.nmea import NmeaParser

DATA = Path(__file__).resolve().parents[1] / "tests/vectors/nmea"
ROUNDS = 5


def bare(lines: list[str]) -> None:
    for line in lines:
        with contextlib.suppress(pynmea2.ParseError):
            pynmea2.parse(line, check=True)


def ours(lines: list[bytes]) -> None:
    parser = NmeaParser()
    for line in lines:
        parser.parse(line)


def best(fn: object, arg: object) -> float:
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        fn(arg)  # type: ignore[operator]  # bench helper: the callables above
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    raw: list[bytes] = []
    for path in sorted(DATA.glob("*.log")):
        raw += [ln for ln in path.read_bytes().split(b"\n") if ln and not ln.startswith(b"#")]
    text = [ln.decode("ascii").rstrip("\r") for ln in raw]
    gc.disable()
    t_bare, t_ours, t_fix = best(bare, text), best(ours, raw), best(fixes_from_lines, raw)
    gc.enable()
    n = len(raw)
    print(f"sentences: {n} from {len(list(DATA.glob('*.log')))} captures")
    print(f"bare pynmea2.parse   {n / t_bare:>10,.0f}/s")
    print(f"ours NmeaParser      {n / t_ours:>10,.0f}/s   ratio {t_bare / t_ours:.2f}x")
    print(f"ours fixes_from_lines{n / t_fix:>10,.0f}/s   ratio {t_bare / t_fix:.2f}x")


if __name__ == "__main__":
    main()
