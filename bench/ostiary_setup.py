"""Ostiary ready to be measured: a scratch PostgreSQL database with the clients, a user,
and enough single-use refresh tokens and authorization codes for every run of a case."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import seed
from bench.common import Probe, Server, fresh_database, ostiary, server_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Setup:
    database: str
    env: dict[str, str]
    cc: dict[str, str]
    rp: dict[str, str]
    rs: dict[str, str]
    refresh_files: list[Path] = field(default_factory=list)
    code_files: list[Path] = field(default_factory=list)
    spare_code: Path | None = None

    def wrk_env(self, case: str, run: int, server: Server) -> dict[str, str]:
        """What the Lua script of ``case`` reads for run ``run`` (0 is the warm-up)."""
        if case == "client_credentials":
            return _credentials(self.cc)
        if case == "refresh_token":
            return {**_credentials(self.rp), "RT_FILE": str(self.refresh_files[run])}
        if case == "authorization_code":
            return {
                **_credentials(self.rp),
                "CODE_FILE": str(self.code_files[run]),
                "CODE_VERIFIER": seed.CODE_VERIFIER,
                "REDIRECT_URI": seed.REDIRECT_URI,
            }
        if case == "introspection":
            return {**_credentials(self.rs), "TOKEN": self.client_token(server)}
        if case == "introspection_user":  # a user's token: its grant is looked up too
            return {**_credentials(self.rs), "TOKEN": self.user_token(server)}
        if case == "userinfo":
            return {"TOKEN": self.user_token(server)}
        return {}

    def probe(self, name: str, server: Server, case: str, script: str, path: str) -> Probe:
        """Ostiary's side of ``case`` for :func:`~bench.common.measure_side_by_side`."""
        return Probe(name, server, script, path, lambda run: self.wrk_env(case, run, server))

    def client_token(self, server: Server) -> str:
        response = httpx.post(
            server.base_url + "/token",
            data={"grant_type": "client_credentials", "scope": "api:read", "resource": seed.RESOURCE},
            auth=(self.cc["client_id"], self.cc["client_secret"]),
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def user_token(self, server: Server) -> str:
        """An access token of user 1 with ``openid`` (from the spare code; cached)."""
        if not hasattr(self, "_user_token"):
            assert self.spare_code is not None
            code = self.spare_code.read_text().split()[0]
            response = httpx.post(
                server.base_url + "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": seed.REDIRECT_URI,
                    "code_verifier": seed.CODE_VERIFIER,
                },
                auth=(self.rp["client_id"], self.rp["client_secret"]),
            )
            response.raise_for_status()
            self._user_token = str(response.json()["access_token"])
        return self._user_token


def _credentials(client: dict[str, str]) -> dict[str, str]:
    return {"CLIENT_ID": client["client_id"], "CLIENT_SECRET": client["client_secret"]}


def prepare(
    work: Path,
    *,
    runs: int,
    per_run: int,
    background_rows: int = 0,
    database: str = "ostiary_bench",
    codes: bool = True,
    settings: dict[str, str] | None = None,
) -> tuple[Setup, int]:
    """A fresh database ``database`` and the server's settings; returns the setup and its port.

    ``per_run`` single-use refresh tokens (and, with ``codes``, authorization codes) for the
    warm-up and each of ``runs``; ``background_rows`` used tokens of other families (and as
    many revoked access tokens) already in the tables; ``settings``: ``OSTIARY_*``
    variables for the server (the scripts' environment's own are not passed on).
    """
    url = fresh_database(database)
    port = free_port()
    env = server_env(url, port, work, **(settings or {}))
    ostiary(["db", "upgrade"], env)
    audience = ["--audience", seed.RESOURCE]
    cc = seed.create_client(env, "--name", "bench-cc", "--scope", "api:read api:write", *audience)
    rp = seed.create_client(
        env,
        "--name",
        "bench-rp",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid offline_access api:read",
        "--redirect-uri",
        seed.REDIRECT_URI,
        "--first-party",
        *audience,
    )
    rs = seed.create_client(env, "--name", "bench-rs", "--scope", "api:read", "--introspection", *audience)
    seed.insert_user(database)
    if background_rows:
        seed.background_refresh_rows(database, rp["client_id"], background_rows)
    setup = Setup(database, env, cc, rp, rs)
    setup.refresh_files = [work / f"refresh-{run}.txt" for run in range(runs + 1)]
    seed.refresh_tokens(database, rp["client_id"], per_run * (runs + 1), setup.refresh_files)
    setup.code_files = [work / f"codes-{run}.txt" for run in range(runs + 1)]
    setup.spare_code = work / "codes-spare.txt"
    if codes:
        seed.authorization_codes(database, rp["client_id"], per_run * (runs + 1), setup.code_files, "openid api:read")
    seed.authorization_codes(database, rp["client_id"], 1, [setup.spare_code], "openid api:read")
    return setup, port
