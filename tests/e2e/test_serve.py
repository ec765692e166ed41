"""End to end: ``ostiary serve`` as its own process, the CLI, and a resource server.

The resource server is PyJWT's ``PyJWKClient``: it fetches ``/jwks`` over HTTP and checks
the token, independently of the JOSE library that signed it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import jwt
import pytest

from server.settings import Settings
from tests.e2e.process import create_client_with_cli, serving
from tests.helpers import (
    TestDatabase,
    make_settings,
    ostiary_command,
    ostiary_env,
    run_ostiary,
)


def test_first_start_serves_and_a_resource_server_verifies_the_token(
    empty_database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(empty_database, tmp_path)
    text_log = {"OSTIARY_LOG_LEVEL": "DEBUG", "OSTIARY_ACCESS_LOG": "true", "OSTIARY_LOG_FORMAT": "text"}
    with serving(settings, tmp_path, **text_log) as (base, log):
        client = create_client_with_cli(settings, tmp_path)
        response = httpx.post(
            base + "/token",
            data={"grant_type": "client_credentials", "scope": "reports:read"},
            auth=(client["client_id"], client["client_secret"]),
        )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]

        discovery = httpx.get(base + "/.well-known/openid-configuration").json()
        signing_key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=["RS256"],
            audience="https://reports.example.com",
            issuer=settings.issuer,
        )
        assert claims["client_id"] == client["client_id"]
        assert claims["scope"] == "reports:read"

        listed = run_ostiary(["clients", "list", "--json"], ostiary_env(settings), cwd=tmp_path)
        assert listed.returncode == 0
        (entry,) = json.loads(listed.stdout)
        assert entry["client_id"] == client["client_id"]
        assert "client_secret" not in entry
        assert client["client_secret"] not in listed.stdout
    text = "\n".join(log)
    assert "created signing key" in text
    assert '"POST /token" 200' in text
    # Nothing secret reaches the log, even at DEBUG.
    assert client["client_secret"] not in text
    assert token not in text and token.split(".")[1] not in text
    assert (tmp_path / "keys" / "secret").stat().st_mode & 0o777 == 0o600
    if empty_database.kind == "sqlite":
        assert (tmp_path / "empty.db").stat().st_mode & 0o777 == 0o600


def test_two_worker_processes_share_one_port(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    with serving(settings, tmp_path, "--workers", "2") as (base, log):
        client = create_client_with_cli(settings, tmp_path)
        kids = set()
        for _ in range(40):
            # A new connection each time, so the kernel spreads them over both sockets.
            response = httpx.post(
                base + "/token",
                data={"grant_type": "client_credentials"},
                auth=(client["client_id"], client["client_secret"]),
            )
            assert response.status_code == 200, response.text
            kids.add(jwt.get_unverified_header(response.json()["access_token"])["kid"])
        assert len(kids) == 1  # every process signs with the one active key
    started = [line for line in log if "Application startup complete" in line]
    assert len(started) == 2


def test_invalid_settings_stop_startup_naming_each_variable(tmp_path: Path) -> None:
    env = ostiary_env(Settings(keys_dir=tmp_path / "keys"), OSTIARY_PORT="eighty", OSTIARY_ISSUER="http://example.com")
    env["OSTIARY_WORKERS"] = "0"
    result = run_ostiary(["serve"], env, cwd=tmp_path)
    assert result.returncode == 2
    for name in ("OSTIARY_PORT", "OSTIARY_WORKERS", "OSTIARY_ISSUER"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_command_line_override_is_named(tmp_path: Path) -> None:
    result = run_ostiary(["serve", "--port", "70000"], ostiary_env(Settings(keys_dir=tmp_path / "k")), cwd=tmp_path)
    assert result.returncode == 2
    assert "--port" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    settings = Settings(database_url="postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/nowhere", keys_dir=tmp_path)
    result = run_ostiary(["serve"], ostiary_env(settings), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot connect to the database OSTIARY_DATABASE_URL=" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_key_secret_stops_startup_without_a_new_key(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    first = run_ostiary(["db", "upgrade"], ostiary_env(settings, OSTIARY_KEYS_SECRET="a" * 40), cwd=tmp_path)
    assert first.returncode == 0 and "database at revision" in first.stdout
    with serving(settings, tmp_path, OSTIARY_KEYS_SECRET="a" * 40) as (base, _):
        kids = [k["kid"] for k in httpx.get(base + "/jwks").json()["keys"]]
    result = run_ostiary(["serve"], ostiary_env(settings, OSTIARY_KEYS_SECRET="b" * 40), cwd=tmp_path)
    assert result.returncode == 1
    assert "OSTIARY_KEYS_SECRET" in result.stderr and any(kid in result.stderr for kid in kids)
    assert "Traceback" not in result.stderr
    with serving(settings, tmp_path, OSTIARY_KEYS_SECRET="a" * 40) as (base, _):
        assert [k["kid"] for k in httpx.get(base + "/jwks").json()["keys"]] == kids  # no new key


def test_client_registration_errors_name_the_option(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    result = run_ostiary(
        ["clients", "create", "--name", "x", "--grant-type", "implicit"], ostiary_env(settings), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "--grant-type" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("port_in_use", [True])
def test_port_in_use_is_reported(database: TestDatabase, tmp_path: Path, port_in_use: bool) -> None:
    import socket

    settings = make_settings(database, tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", settings.port))
        blocker.listen()
        result = run_ostiary(["serve"], ostiary_env(settings), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{settings.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_users_create_then_sign_in_through_the_served_process(database: TestDatabase, tmp_path: Path) -> None:
    from tests.oidc import REDIRECT_URI, Flow, query_of

    settings = make_settings(database, tmp_path)
    env = ostiary_env(settings, OSTIARY_ARGON2_TIME_COST="2", OSTIARY_ARGON2_MEMORY_KIB="19456")
    created = subprocess.run(
        [
            *ostiary_command(),
            "users",
            "create",
            "--username",
            "carol",
            "--email",
            "carol@example.com",
            "--password-stdin",
        ],
        input="a long enough passphrase\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    rp = run_ostiary(
        [
            "clients",
            "create",
            "--name",
            "rp",
            "--grant-type",
            "authorization_code",
            "--scope",
            "openid",
            "--redirect-uri",
            REDIRECT_URI,
            "--first-party",
            "--json",
        ],
        env,
        cwd=tmp_path,
    )
    assert rp.returncode == 0, rp.stderr
    client = json.loads(rp.stdout)
    with serving(settings, tmp_path, **env) as (base, _):
        flow = Flow.start(client["client_id"])
        with httpx.Client(base_url=base) as http:
            page = http.get("/authorize", params=flow.params(scope="openid"))
            from tests.oidc import forms_of

            (form,) = forms_of(page.text)
            done = http.post(
                form.action, data={**form.fields, "username": "carol", "password": "a long enough passphrase"}
            )
            assert done.status_code == 303, done.text
            code = query_of(done.headers["location"])["code"]
            tokens = http.post(
                "/token", data=flow.token_form(code), auth=(client["client_id"], client["client_secret"])
            ).json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["aud"] == client["client_id"]


@pytest.mark.parametrize(
    "args, stdin, named",
    [
        (["--username", "dave", "--password-stdin"], "short\n", "password"),
        (["--username", "dave", "--password-stdin"], "dave\n", "password"),
        (["--username", "has space", "--password-stdin"], "a long enough passphrase\n", "--username"),
        (
            ["--username", "dave", "--email", "not-an-email", "--password-stdin"],
            "a long enough passphrase\n",
            "--email",
        ),
        (["--username", "dave"], "", "--password-stdin"),
    ],
)
def test_users_create_refuses_bad_input_naming_it(
    database: TestDatabase, tmp_path: Path, args: list[str], stdin: str, named: str
) -> None:
    settings = make_settings(database, tmp_path)
    result = subprocess.run(
        [*ostiary_command(), "users", "create", *args],
        input=stdin,
        env=ostiary_env(settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr


def test_users_create_refuses_a_taken_username(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    command = [*ostiary_command(), "users", "create", "--username", "Erin", "--password-stdin"]
    options = {"env": ostiary_env(settings), "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 60}
    assert subprocess.run(command, input="a long enough passphrase\n", check=False, **options).returncode == 0
    again = [*ostiary_command(), "users", "create", "--username", "erin", "--password-stdin"]
    second = subprocess.run(again, input="a long enough passphrase\n", check=False, **options)
    assert second.returncode == 2
    assert "--username" in second.stderr and "already in use" in second.stderr
