"""Keylime's ``checkquote`` on one quote; run in ``bench/.venv-peers`` only.

Usage: ``python keylime_quote.py DIR ITERATIONS REPEATS`` where DIR holds ``ak.pem``,
``quote.bin`` (TPMS_ATTEST), ``sig.bin`` (TPMT_SIGNATURE), ``pcrs.bin`` (tpm2-tools PCR dump) and
``nonce.txt``. Prints ``{"per_second": best rate, "pcrs": n}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from keylime.tpm.tpm_util import checkquote  # type: ignore[import-not-found]  # peers venv only


def main() -> None:
    directory, iterations, repeats = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ak = (directory / "ak.pem").read_bytes()
    quote = (directory / "quote.bin").read_bytes()
    sig = (directory / "sig.bin").read_bytes()
    pcrs = (directory / "pcrs.bin").read_bytes()
    nonce = (directory / "nonce.txt").read_text()
    values = checkquote(ak, nonce, sig, quote, pcrs, "sha256")  # fails loudly if it disagrees
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            checkquote(ak, nonce, sig, quote, pcrs, "sha256")
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"per_second": iterations / best, "pcrs": len(values)}))


if __name__ == "__main__":
    main()
