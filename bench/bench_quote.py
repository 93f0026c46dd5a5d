"""Quote verification per core: geoattest vs Keylime's checkquote vs raw ECDSA P-256 verify.

All three check the SAME quote, made by a real swtpm with an ECC P-256 AK over 10 sha256 PCRs, in
one run. Keylime runs in its own venv (``bench/peers/setup.sh``) on the same files. Run:

    .venv/bin/python bench/bench_quote.py [--iterations 5000] [--repeats 5]

What each measures per call:
- raw: ``cryptography`` ECDSA verify of the signature over TPMS_ATTEST (key loaded once): the
  hardware-and-library limit of any quote check;
- geoattest: ``tpm.verify_quote`` (signature, quote type, extraData == nonce, PCR selection and
  digest), with the AK public area parsed once, as the verifier's workers cache it;
- Keylime: ``keylime.tpm.tpm_util.checkquote`` (signature, nonce, digest, PCR blob parsing; it
  loads the AK PEM on every call, as Keylime's verifier does).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.tpm_device import TpmDevice
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance
from geoattest.pcr_banks import PcrBank
from tpm import Alg, parse_tpm2b_public, parse_tpmt_signature, verify_quote

PEERS = Path(__file__).parent / ".venv-peers" / "bin" / "python"
PCRS = list(range(10))
NONCE = "geoattest-bench-0001"  # Keylime compares extraData with a str nonce


def tpm2_tools_pcr_blob(values: Mapping[int, bytes]) -> bytes:
    """The tpm2-tools PCR dump Keylime parses: little-endian TPML_PCR_SELECTION padded to 16
    entries of 8 bytes, then the TPML_DIGEST lists (8 slots of 2+64 bytes each)."""
    select = bytearray(4)
    for index in values:
        select[index // 8] |= 1 << (index % 8)
    selection = struct.pack("<I", 1) + struct.pack("<HB", Alg.SHA256, 3) + bytes(select) + b"\0"
    selection += bytes(8 * 15)
    digests = [values[index] for index in sorted(values)]
    lists = [digests[i : i + 8] for i in range(0, len(digests), 8)]
    body = struct.pack("<I", len(lists))
    for chunk in lists:
        body += struct.pack("<I", len(chunk))
        for slot in range(8):
            value = chunk[slot] if slot < len(chunk) else b""
            body += struct.pack("<H", len(value)) + value.ljust(64, b"\0")
    return selection + body


def best_rate(fn: Callable[[], object], iterations: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, time.perf_counter() - start)
    return iterations / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = SwtpmCa.create(work / "ca")
        with SwtpmInstance.setup(work / "tpm", ca) as swtpm, TpmDevice(swtpm.tcti) as device:
            ak_bytes = device.ensure_ak()
            quote = device.quote(NONCE.encode(), {PcrBank.SHA256: PCRS})
        ak = parse_tpm2b_public(ak_bytes)
        values = {int(i): v for i, v in quote.pcrs[PcrBank.SHA256].items()}
        signature = parse_tpmt_signature(quote.signature)
        public_key = ak.public_key
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        der = signature.to_der()

        def raw() -> None:
            public_key.verify(der, quote.attest, ec.ECDSA(hashes.SHA256()))

        def ours() -> None:
            verify_quote(
                ak=ak,
                attest=quote.attest,
                signature=quote.signature,
                nonce=NONCE.encode(),
                pcr_values={Alg.SHA256: values},
            )

        ours()  # fails loudly if the quote does not verify
        raw_rate = best_rate(raw, args.iterations, args.repeats)
        ours_rate = best_rate(ours, args.iterations, args.repeats)

        (work / "ak.pem").write_bytes(
            public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (work / "quote.bin").write_bytes(quote.attest)
        (work / "sig.bin").write_bytes(quote.signature)
        (work / "pcrs.bin").write_bytes(tpm2_tools_pcr_blob(values))
        (work / "nonce.txt").write_text(NONCE)
        keylime_rate = run_keylime(work, args.iterations, args.repeats)

    runs = f"best of {args.repeats} x {args.iterations}"
    print(f"quote: swtpm ECC P-256 AK, {len(PCRS)} sha256 PCRs, {runs}")
    print(f"  raw ECDSA P-256 verify : {raw_rate:10,.0f} /s   1.00x")
    print(f"  geoattest verify_quote : {ours_rate:10,.0f} /s   {ours_rate / raw_rate:.2f}x raw")
    if keylime_rate is None:
        print("  keylime checkquote     : not measured (run bench/peers/setup.sh)")
    else:
        versus = f"(geoattest = {ours_rate / keylime_rate:.2f}x keylime)"
        print(
            f"  keylime checkquote     : {keylime_rate:10,.0f} /s   "
            f"{keylime_rate / raw_rate:.2f}x raw   {versus}"
        )


def run_keylime(work: Path, iterations: int, repeats: int) -> float | None:
    if not PEERS.exists():
        return None
    script = Path(__file__).parent / "peers" / "keylime_quote.py"
    out = subprocess.run(
        [str(PEERS), str(script), str(work), str(iterations), str(repeats)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    rate: float = json.loads(out.stdout)["per_second"]
    return rate


if __name__ == "__main__":
    main()
