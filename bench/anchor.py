"""node-oidc-provider, the side-by-side anchor: installed once into a cache folder from
``bench/anchor`` (npm ``oidc-provider`` 9.x, one RS256 2048-bit key, JWT access tokens
through resource indicators, rotating refresh tokens, introspection), then run with N
processes (node:cluster) on a loopback port: with the in-memory adapter, as the issue's
anchor, or durable in a PostgreSQL database (``anchor/pg_adapter.mjs``)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import Server
from bench.seed import CODE_VERIFIER

SOURCE = Path(__file__).resolve().parent / "anchor"
CACHE = Path(os.environ.get("OSTIARY_BENCH_CACHE", Path.home() / ".cache" / "ostiary-bench")) / "node-anchor"
CLIENT = {"client_id": "bench-client", "client_secret": "bench-secret-0123456789abcdef0123456789abcdef"}


def install() -> Path:
    """The anchor's folder, with its packages and key (installed on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        sys.exit("node and npm are missing: apt-get install nodejs npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    # one installer at a time: two scripts (a test suite's workers) may start at once
    with open(CACHE.parent / "node-anchor.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in ("package.json", "server.mjs", "pg_adapter.mjs", "genkeys.mjs"):
            if not (CACHE / name).exists() or (CACHE / name).read_bytes() != (SOURCE / name).read_bytes():
                shutil.copy2(SOURCE / name, CACHE / name)
        dependencies = json.loads((SOURCE / "package.json").read_text())["dependencies"]
        if not all((CACHE / "node_modules" / name).exists() for name in dependencies):
            subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=CACHE, check=True, capture_output=True)
        if not (CACHE / "jwks.json").exists():
            subprocess.run(["node", "genkeys.mjs", "."], cwd=CACHE, check=True, capture_output=True)
    return CACHE


def version() -> str:
    package = CACHE / "node_modules" / "oidc-provider" / "package.json"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return f"oidc-provider {json.loads(package.read_text())['version']} on Node.js {node}"


@dataclass(frozen=True)
class Precreated:
    """What the anchor makes through its own models before it listens (in memory, one
    process's store: one process only; in PostgreSQL, for all), each written to a file in
    ``folder``: ``refresh_tokens`` and ``codes`` (PKCE with ``bench.seed.CODE_VERIFIER``),
    one per line; with ``tokens``, an opaque access token of a user with ``openid`` (for
    userinfo) and one of the client (for introspection: node-oidc-provider introspects no
    JWT access token)."""

    folder: Path
    refresh_tokens: int = 0
    codes: int = 0
    tokens: bool = False

    @property
    def refresh_file(self) -> Path:
        return self.folder / "anchor-refresh-tokens.txt"

    @property
    def code_file(self) -> Path:
        return self.folder / "anchor-codes.txt"

    @property
    def tokens_file(self) -> Path:
        return self.folder / "anchor-tokens.json"

    def env(self) -> dict[str, str]:
        env = {}
        if self.refresh_tokens:
            env.update(RT_PRECREATE=str(self.refresh_tokens), RT_FILE=str(self.refresh_file))
        if self.codes:
            env.update(AC_PRECREATE=str(self.codes), AC_FILE=str(self.code_file), CODE_VERIFIER=CODE_VERIFIER)
        if self.tokens:
            env.update(TOKENS_FILE=str(self.tokens_file))
        return env

    def token(self, use: str) -> str:
        """The pre-created access token for ``use``: "userinfo" or "introspection"."""
        return str(json.loads(self.tokens_file.read_text())[use])


@contextmanager
def serving(
    port: int, workers: int, *, precreated: Precreated | None = None, database_url: str | None = None
) -> Iterator[Server]:
    """node-oidc-provider on ``port``, with N processes; with ``precreated``, having made
    those tokens and codes first; with ``database_url`` (``postgresql://``), every model
    kept in that database, else in memory."""
    folder = install()
    env = {**os.environ, "PORT": str(port), "JWKS": str(folder / "jwks.json"), "WORKERS": str(workers)}
    if database_url is not None:
        env["ANCHOR_DATABASE_URL"] = database_url
    if precreated is not None:
        assert workers == 1 or database_url is not None, "the in-memory store is per process"
        env.update(precreated.env())
    process = subprocess.Popen(
        ["node", "server.mjs"], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(3000):  # pre-creating in PostgreSQL takes minutes
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
