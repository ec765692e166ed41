"""Signing (and verifying) one access token per algorithm, in process, side by side.

    python bench/signing.py [--count 2000] [--runs 5] [--bits 2048] [--algs RS256 PS256 ES256]

For each algorithm a key made as the server makes it (``server.keys.material``), and the
server's own signer (:class:`server.keys.signer.CompactSigner`) signing the claims of a
typical RFC 9068 access token: ``count`` signatures per run, the algorithms taking turns
run by run (so a host whose speed drifts weighs on all alike). Verification is timed the
same way, as a resource server's library does it (joserfc's algorithm model, the key
already parsed), and so is the bare signature primitive (``cryptography`` signing the same
bytes), to tell the algorithm's cost from the signer's share of JSON, base64 and joserfc.
No database, no sockets. Prints a Markdown table: median microseconds per token signed
(and the range over the runs), tokens signed per second, the speed against RS256, the
bare primitive's median and speed against RS256's, and verification.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cryptography
import joserfc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from joserfc.jwk import KeyParameters
from joserfc.jws import JWSRegistry

from server.keys.material import Key, generate
from server.keys.signer import CompactSigner

ALGS = ("RS256", "PS256", "ES256")
CLAIMS = {
    "iss": "https://login.example.com",
    "exp": 1_800_000_000,
    "client_id": "s6BhdRkqt3",
    "iat": 1_799_996_400,
    "jti": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "scope": "api:read api:write",
    "sub": "s6BhdRkqt3",
    "aud": "https://api.example.com",
}


def signer_for(alg: str, bits: int) -> CompactSigner:
    made = generate(alg, rsa_bits=bits)
    # as the key ring imports it: the kid and alg in the key's parameters
    parameters: KeyParameters = {"kid": made.thumbprint(), "alg": alg, "use": "sig"}
    key: Key = type(made).import_key(made.as_pem(private=True), parameters)
    return CompactSigner(key, alg)


def per_call_us(work: Callable[[], object], count: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Microseconds per call of ``work``, by ``clock`` (``time.process_time``: CPU, which a
    busy machine does not stretch as it stretches the time a call waits for a core)."""
    start = clock()
    for _ in range(count):
        work()
    return (clock() - start) / count * 1e6


def verifier(signer: CompactSigner, token: str) -> Callable[[], object]:
    header, payload, signature = token.encode("ascii").split(b".")
    signing_input = header + b"." + payload
    raw = base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4))
    model = JWSRegistry.algorithms[signer.alg]
    public = signer.key

    def verify() -> object:
        if not model.verify(signing_input, raw, public):
            raise AssertionError(f"{signer.alg}: the signature does not verify")
        return True

    return verify


def primitive(signer: CompactSigner, data: bytes) -> Callable[[], object]:
    """The bare signature of ``data`` with ``cryptography``, as the JWS algorithm makes it."""
    private: Any = signer.key.private_key
    if signer.alg == "RS256":
        return lambda: private.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if signer.alg == "PS256":  # RFC 7518 §3.5: MGF1 with SHA-256, a salt as long as the hash
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return lambda: private.sign(data, pss, hashes.SHA256())
    return lambda: private.sign(data, ec.ECDSA(hashes.SHA256()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="signatures (and verifications) per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bits", type=int, default=2048, choices=(2048, 3072, 4096), help="RSA key size")
    parser.add_argument("--algs", nargs="+", choices=ALGS, default=list(ALGS))
    args = parser.parse_args()

    signers = {alg: signer_for(alg, args.bits) for alg in args.algs}
    verifiers = {alg: verifier(signer, signer.sign(CLAIMS, typ="at+jwt")) for alg, signer in signers.items()}
    for alg, signer in signers.items():  # warm up
        per_call_us(lambda signer=signer: signer.sign(CLAIMS, typ="at+jwt"), max(1, args.count // 10))
        per_call_us(verifiers[alg], max(1, args.count // 10))
    signing_input = signers[args.algs[0]].sign(CLAIMS, typ="at+jwt").rsplit(".", 1)[0].encode()
    primitives = {alg: primitive(signer, signing_input) for alg, signer in signers.items()}
    signs: dict[str, list[float]] = {alg: [] for alg in signers}
    bare: dict[str, list[float]] = {alg: [] for alg in signers}
    verifies: dict[str, list[float]] = {alg: [] for alg in signers}
    for _ in range(args.runs):
        for alg, signer in signers.items():
            signs[alg].append(per_call_us(lambda signer=signer: signer.sign(CLAIMS, typ="at+jwt"), args.count))
            bare[alg].append(per_call_us(primitives[alg], args.count))
            verifies[alg].append(per_call_us(verifiers[alg], args.count))

    print(
        f"cores: {os.cpu_count()}; Python {platform.python_version()}; joserfc {joserfc.__version__}; "
        f"cryptography {cryptography.__version__}; RSA {args.bits} bits, P-256"
    )
    print(f"{args.runs} runs of {args.count} signatures and {args.count} verifications per algorithm, taking turns")
    print()
    print(
        "| alg | sign µs (median) | range | tokens signed/s | sign speed vs RS256 "
        "| bare signature µs | bare speed vs RS256 | verify µs (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for alg in signers:
        median, primitive_median = statistics.median(signs[alg]), statistics.median(bare[alg])
        print(
            f"| {alg} | {median:,.1f} | {min(signs[alg]):,.1f}–{max(signs[alg]):,.1f} | {1e6 / median:,.0f} "
            f"| {_speed(signs, alg)} | {primitive_median:,.1f} | {_speed(bare, alg)} "
            f"| {statistics.median(verifies[alg]):,.1f} |"
        )


def _speed(figures: dict[str, list[float]], alg: str) -> str:
    """How many times faster than RS256 (the median of each)."""
    if "RS256" not in figures:
        return "–"
    return f"{statistics.median(figures['RS256']) / statistics.median(figures[alg]):.2f}×"


if __name__ == "__main__":
    main()
