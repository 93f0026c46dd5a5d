"""Keylime's IMA replay + policy check on a log file; run in ``bench/.venv-peers`` only.

Usage: ``python keylime_ima.py LOG POLICY_DIGESTS_JSON PCR10_SHA256_HEX REPEATS``; prints
``{"entries": n, "best_seconds": s, "failure": bool}``. The policy file is a JSON object
``{path: [hex, ...]}`` put into ``ima.empty_policy()["digests"]``, as Keylime's verifier does.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time

from keylime.common.algorithms import Hash  # type: ignore[import-not-found]  # peers venv only
from keylime.ima import ima  # type: ignore[import-not-found]  # peers venv only


def main() -> None:
    log_path, policy_path, pcr_hex, repeats = sys.argv[1:5]
    logging.disable(logging.WARNING)  # a failing entry logs per line; keep timing clean
    with open(log_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    with open(policy_path, encoding="utf-8") as f:
        digests = json.load(f)
    policy = ima.empty_policy()
    policy["digests"] = digests
    best = float("inf")
    failed = True
    gc.disable()
    for _ in range(int(repeats)):
        start = time.perf_counter()
        running, failure = ima.process_measurement_list(
            None, lines, policy, pcr_hex, hash_alg=Hash.SHA256
        )
        best = min(best, time.perf_counter() - start)
        failed = bool(failure) or running != pcr_hex
    entries = sum(1 for line in lines if line)
    print(json.dumps({"entries": entries, "best_seconds": best, "failure": failed}))


if __name__ == "__main__":
    main()
