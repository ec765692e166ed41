"""node-oidc-provider, the side-by-side anchor: installed once into a cache folder from
``bench/anchor`` (npm ``oidc-provider`` 9.x, one RS256 2048-bit key, JWT access tokens
through resource indicators, rotating refresh tokens, the in-memory adapter), then run with
N processes (node:cluster) on a loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.common import Server

SOURCE = Path(__file__).resolve().parent / "anchor"
CACHE = Path(os.environ.get("OSTIARY_BENCH_CACHE", Path.home() / ".cache" / "ostiary-bench")) / "node-anchor"
CLIENT = {"client_id": "bench-client", "client_secret": "bench-secret-0123456789abcdef0123456789abcdef"}


def install() -> Path:
    """The anchor's folder, with its packages and key (installed on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        sys.exit("node and npm are missing: apt-get install nodejs npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "server.mjs", "genkeys.mjs"):
        shutil.copy2(SOURCE / name, CACHE / name)
    if not (CACHE / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=CACHE, check=True, capture_output=True)
    if not (CACHE / "jwks.json").exists():
        subprocess.run(["node", "genkeys.mjs", "."], cwd=CACHE, check=True, capture_output=True)
    return CACHE


def version() -> str:
    package = CACHE / "node_modules" / "oidc-provider" / "package.json"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    import json

    return f"oidc-provider {json.loads(package.read_text())['version']} on Node.js {node}"


@contextmanager
def serving(port: int, workers: int, *, refresh_tokens: int = 0, token_file: Path | None = None) -> Iterator[Server]:
    """node-oidc-provider on ``port``; with ``refresh_tokens``, that many are pre-created
    (one process only: the in-memory store is per process) and written to ``token_file``."""
    folder = install()
    env = {**os.environ, "PORT": str(port), "JWKS": str(folder / "jwks.json"), "WORKERS": str(workers)}
    if refresh_tokens:
        assert token_file is not None and workers == 1
        env.update(RT_PRECREATE=str(refresh_tokens), RT_FILE=str(token_file))
    process = subprocess.Popen(
        ["node", "server.mjs"], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(base + "/jwks", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                sys.exit("node-oidc-provider exited at startup")
            time.sleep(0.1)
        else:
            sys.exit("node-oidc-provider did not start")
        time.sleep(1)
        yield Server(process, base)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
