"""End to end: the administration commands, run against a served ``ostiary``.

``ostiary users disable | enable | update | delete | unlock``, ``ostiary clients
disable | enable | rotate-secret | update | delete`` and ``ostiary sessions list | end``:
what each prints (``--json``), what
it changes for a client or a user of the running server, the audit row naming the actor
``cli``, and one clear line with a non-zero exit for bad input.

The server runs with ``OSTIARY_CLIENT_CACHE_TTL=0``, so that a change is seen at once
rather than within the cache's lifetime. The commands of a test are run one after another
by one process calling the command's entry point (:class:`tests.e2e.process.Commands`): each
start of ``ostiary`` costs a second or two of imports.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from server.settings import Settings
from server.storage.engine import make_engine
from server.storage.models import AuditEvent
from tests.e2e.process import Commands, serving, sign_in
from tests.helpers import TestDatabase, make_settings, ostiary_env
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, forms_of

SERVE_ENV = {
    "OSTIARY_CLIENT_CACHE_TTL": "0",
    "OSTIARY_RATE_LIMIT_LOGIN_PER_MINUTE": "1000",
    "OSTIARY_ARGON2_TIME_COST": "2",
    "OSTIARY_ARGON2_MEMORY_KIB": "19456",
}


#: the process running each test's commands, started by its first one
_COMMANDS: dict[tuple[str, Path], Commands] = {}


@pytest.fixture(autouse=True)
def _end_commands(database: TestDatabase) -> Iterator[None]:
    """Ends the test's commands process before its database goes."""
    yield
    while _COMMANDS:
        _COMMANDS.popitem()[1].close()


def ostiary(settings: Settings, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    key = (settings.database_url, tmp_path)
    if key not in _COMMANDS:
        _COMMANDS[key] = Commands(ostiary_env(settings, **SERVE_ENV), tmp_path)
    return _COMMANDS[key].run(*args, stdin=stdin)


def create_client_with_cli(settings: Settings, tmp_path: Path, *options: str) -> dict[str, str]:
    """``ostiary clients create --json``; without options, a client_credentials client."""
    default = ("--scope", "reports:read", "--audience", "https://reports.example.com")
    created: dict[str, str] = succeeded(
        ostiary(settings, tmp_path, "clients", "create", "--name", "reports", *(options or default), "--json")
    )
    return created


def create_user_with_cli(settings: Settings, tmp_path: Path, username: str) -> None:
    created = ostiary(
        settings,
        tmp_path,
        "users",
        "create",
        "--username",
        username,
        "--email",
        f"{username}@example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr


def succeeded(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a command printed, once it exited 0."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit status 2 and one line on stderr that says what is wrong."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ostiary: ")
    for text in expected:
        assert text in lines[0]


def cli_audit(settings: Settings) -> list[tuple[str, str | None]]:
    """``(kind, whom)`` of the audit rows whose actor is the command line, oldest first: whom
    is the user's sub, else the client id, else the subject. The setup's ``users create``
    rows (and ``clients create``'s) are left out."""
    rows = audit_rows(settings)
    return [(kind, subject) for kind, actor, subject in rows if actor == "cli" and not kind.endswith(".created")]


def audit_rows(settings: Settings) -> list[tuple[str, str | None, str | None]]:
    async def read() -> list[tuple[str, str | None, str | None]]:
        engine = make_engine(settings.database_url)
        try:
            async with engine.connect() as connection:
                whom = func.coalesce(AuditEvent.user_sub, AuditEvent.client_id, AuditEvent.subject).label("whom")
                query = select(AuditEvent.kind, AuditEvent.actor, whom).order_by(AuditEvent.id)
                return [(row.kind, row.actor, row.whom) for row in await connection.execute(query)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def token(base: str, client: dict[str, str], secret: str | None = None) -> httpx.Response:
    return httpx.post(
        base + "/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], secret or client["client_secret"]),
    )


def introspect(base: str, value: str, resource_server: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(
        base + "/introspect",
        data={"token": value},
        auth=(resource_server["client_id"], resource_server["client_secret"]),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def try_sign_in(base: str, client: dict[str, str], username: str, password: str = PASSWORD) -> httpx.Response:
    """The password step of the code flow; 303 when it signed in."""
    with httpx.Client(base_url=base) as http:
        page = http.get("/authorize", params=Flow.start(client["client_id"]).params(scope="openid"))
        assert page.status_code == 200, page.headers.get("location")
        (form,) = forms_of(page.text)
        return http.post(form.action, data={**form.fields, "username": username, "password": password})


@pytest.fixture
def settings(database: TestDatabase, tmp_path: Path) -> Settings:
    return make_settings(database, tmp_path)


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serving(settings, tmp_path, **SERVE_ENV) as (base, _):
        yield base


@pytest.fixture
def resource_server(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return create_client_with_cli(settings, tmp_path, "--introspection", "--scope", "x")


@pytest.fixture
def rp(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """A first-party relying party (no consent page) with refresh tokens."""
    return create_client_with_cli(
        settings,
        tmp_path,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid offline_access",
        "--redirect-uri",
        REDIRECT_URI,
        "--first-party",
    )


# Clients.


def test_clients_disable_and_enable(settings: Settings, tmp_path: Path, served: str) -> None:
    client = create_client_with_cli(settings, tmp_path)
    assert token(served, client).status_code == 200

    disabled = succeeded(ostiary(settings, tmp_path, "clients", "disable", "--json", "--", client["client_id"]))
    assert disabled == {"client_id": client["client_id"], "disabled": True, "changed": True}
    assert token(served, client).status_code == 401
    again = succeeded(ostiary(settings, tmp_path, "clients", "disable", "--json", "--", client["client_id"]))
    assert again["changed"] is False
    listed = succeeded(ostiary(settings, tmp_path, "clients", "list", "--json"))
    assert [entry["disabled"] for entry in listed] == [True]

    enabled = ostiary(settings, tmp_path, "clients", "enable", "--", client["client_id"])
    assert enabled.returncode == 0 and "enabled" in enabled.stdout
    assert token(served, client).status_code == 200
    assert [kind for kind, _ in cli_audit(settings)] == ["client.disabled", "client.enabled"]
    refused(ostiary(settings, tmp_path, "clients", "disable", "no-such-client"), "CLIENT_ID", "no-such-client")


def test_clients_rotate_secret_with_and_without_an_overlap(settings: Settings, tmp_path: Path, served: str) -> None:
    client = create_client_with_cli(settings, tmp_path)
    rotated = succeeded(
        ostiary(
            settings,
            tmp_path,
            "clients",
            "rotate-secret",
            "--keep-old-for",
            "1h",
            "--json",
            "--",
            client["client_id"],
        )
    )
    new_secret = rotated["client_secret"]
    assert new_secret != client["client_secret"] and rotated["keep_old_for"] == 3600
    assert token(served, client, new_secret).status_code == 200
    assert token(served, client).status_code == 200  # the old one, inside the overlap

    plain = ostiary(settings, tmp_path, "clients", "rotate-secret", "--", client["client_id"])
    assert plain.returncode == 0, plain.stderr
    (latest,) = [line.split()[-1] for line in plain.stdout.splitlines() if line.startswith("client_secret:")]
    assert "no longer works" in plain.stdout
    assert token(served, client, latest).status_code == 200
    assert token(served, client, new_secret).status_code == 401
    assert token(served, client).status_code == 401
    assert new_secret not in str(audit_rows(settings)) and latest not in str(audit_rows(settings))
    assert cli_audit(settings) == [("client.secret_rotated", client["client_id"])] * 2

    refused(ostiary(settings, tmp_path, "clients", "rotate-secret", "--keep-old-for", "-5", "--", client["client_id"]))
    public = create_client_with_cli(
        settings, tmp_path, "--public", "--grant-type", "authorization_code", "--redirect-uri", REDIRECT_URI
    )
    refused(ostiary(settings, tmp_path, "clients", "rotate-secret", "--", public["client_id"]), "public")


APP_ORIGIN = "https://photos.example.com"


def test_clients_cors_origins_are_set_normalised_and_cleared(settings: Settings, tmp_path: Path, served: str) -> None:
    created = create_client_with_cli(
        settings,
        tmp_path,
        "--public",
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        REDIRECT_URI,
        "--cors-origin",
        "https://Photos.example.com:443/",
        "--cors-origin",
        "http://localhost:5173",
    )
    cid = created["client_id"]
    (listed,) = [
        c for c in succeeded(ostiary(settings, tmp_path, "clients", "list", "--json")) if c["client_id"] == cid
    ]
    assert listed["allowed_cors_origins"] == ["https://photos.example.com", "http://localhost:5173"]
    refused(
        ostiary(settings, tmp_path, "clients", "update", "--cors-origin", "https://*.example.com", "--", cid),
        "--cors-origin",
    )
    cleared = succeeded(ostiary(settings, tmp_path, "clients", "update", "--cors-origin", "", "--json", "--", cid))
    assert cleared["allowed_cors_origins"] == []
    # a secret has no place in a browser page: only public clients are called from one
    confidential = ("--grant-type", "authorization_code", "--redirect-uri", REDIRECT_URI)
    refused(
        ostiary(settings, tmp_path, "clients", "create", "--name", "x", *confidential, "--cors-origin", APP_ORIGIN),
        "--cors-origin",
    )


def test_clients_update_follows_the_rules_of_create(settings: Settings, tmp_path: Path, served: str) -> None:
    client = create_client_with_cli(settings, tmp_path)
    updated = succeeded(
        ostiary(
            settings,
            tmp_path,
            "clients",
            "update",
            "--name",
            "Reports v2",
            "--scope",
            "reports:read reports:write",
            "--audience",
            "https://reports.example.com/v2",
            "--json",
            "--",
            client["client_id"],
        )
    )
    assert updated["client_name"] == "Reports v2"
    assert updated["scope"] == "reports:read reports:write"
    assert updated["audiences"] == ["https://reports.example.com/v2"]
    answer = httpx.post(
        served + "/token",
        data={"grant_type": "client_credentials", "scope": "reports:write"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert answer.status_code == 200, answer.text

    code_flow = ("--grant-type", "authorization_code", "--redirect-uri", REDIRECT_URI)
    turned = succeeded(
        ostiary(
            settings, tmp_path, "clients", "update", *code_flow, "--require-mfa", "--json", "--", client["client_id"]
        )
    )
    assert turned["grant_types"] == ["authorization_code"] and turned["require_mfa"] is True
    assert cli_audit(settings) == [("client.updated", client["client_id"])] * 2

    cid = client["client_id"]
    refused(
        ostiary(settings, tmp_path, "clients", "update", "--redirect-uri", "http://evil.example/cb", "--", cid),
        "--redirect-uri",
    )
    refused(ostiary(settings, tmp_path, "clients", "update", "--redirect-uri", "", "--", cid), "--redirect-uri")
    refused(ostiary(settings, tmp_path, "clients", "update", "--id-token-alg", "none", "--", cid), "--id-token-alg")
    refused(ostiary(settings, tmp_path, "clients", "update", "--name", " ", "--", cid), "--name")
    refused(ostiary(settings, tmp_path, "clients", "update", "--", cid), "nothing to change")
    refused(ostiary(settings, tmp_path, "clients", "update", "--name", "x", "--", "nope"), "no client")
    listed = succeeded(ostiary(settings, tmp_path, "clients", "list", "--json"))
    assert [entry["client_name"] for entry in listed] == ["Reports v2"]  # nothing half-written


def test_clients_delete_ends_its_tokens(
    settings: Settings, tmp_path: Path, served: str, resource_server: dict[str, str]
) -> None:
    client = create_client_with_cli(settings, tmp_path)
    access = token(served, client).json()["access_token"]
    assert introspect(served, access, resource_server)["active"] is True

    deleted = succeeded(ostiary(settings, tmp_path, "clients", "delete", "--json", "--", client["client_id"]))
    assert deleted == {"client_id": client["client_id"], "client_name": "reports", "deleted": True}
    assert introspect(served, access, resource_server) == {"active": False}
    assert token(served, client).status_code == 401
    assert cli_audit(settings) == [("client.deleted", client["client_id"])]
    refused(ostiary(settings, tmp_path, "clients", "delete", "--", client["client_id"]), "no client")


# Users.


def test_users_disable_and_enable(
    settings: Settings, tmp_path: Path, served: str, rp: dict[str, str], resource_server: dict[str, str]
) -> None:
    create_user_with_cli(settings, tmp_path, "dora")
    tokens = sign_in(served, rp, "dora", "openid offline_access")

    disabled = succeeded(ostiary(settings, tmp_path, "users", "disable", "dora", "--json"))
    assert disabled["disabled"] is True and disabled["changed"] is True and disabled["username"] == "dora"
    assert try_sign_in(served, rp, "dora").status_code == 200  # the form again, with an error
    assert introspect(served, tokens["access_token"], resource_server) == {"active": False}
    refreshed = httpx.post(
        served + "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(rp["client_id"], rp["client_secret"]),
    )
    assert refreshed.status_code == 400

    enabled = ostiary(settings, tmp_path, "users", "enable", "dora")
    assert enabled.returncode == 0 and "enabled" in enabled.stdout
    assert try_sign_in(served, rp, "dora").status_code == 303
    assert [kind for kind, _ in cli_audit(settings)] == ["user.disabled", "user.enabled"]
    refused(ostiary(settings, tmp_path, "users", "disable", "nobody"), "USER", "nobody")


def test_users_update(settings: Settings, tmp_path: Path, served: str, rp: dict[str, str]) -> None:
    create_user_with_cli(settings, tmp_path, "erin")
    create_user_with_cli(settings, tmp_path, "frank")
    updated = succeeded(
        ostiary(
            settings,
            tmp_path,
            "users",
            "update",
            "erin",
            "--username",
            "erin.b",
            "--email",
            "erin.b@example.com",
            "--name",
            "Erin B",
            "--json",
        )
    )
    assert updated["username"] == "erin.b" and updated["name"] == "Erin B"
    assert updated["email"] == "erin.b@example.com" and updated["email_verified"] is False
    verified = succeeded(ostiary(settings, tmp_path, "users", "update", "erin.b", "--email-verified", "--json"))
    assert verified["email_verified"] is True
    assert try_sign_in(served, rp, "erin.b").status_code == 303
    assert [kind for kind, _ in cli_audit(settings)] == ["user.updated", "user.updated"]

    refused(ostiary(settings, tmp_path, "users", "update", "erin.b", "--username", "frank"), "--username", "in use")
    refused(ostiary(settings, tmp_path, "users", "update", "erin.b", "--email", "not-an-address"), "--email")
    refused(ostiary(settings, tmp_path, "users", "update", "erin.b", "--username", "has space"), "--username")
    refused(ostiary(settings, tmp_path, "users", "update", "erin.b"), "nothing to change")
    refused(ostiary(settings, tmp_path, "users", "update", "erin", "--name", "x"), "no user")


def test_users_unlock(settings: Settings, tmp_path: Path, served: str, rp: dict[str, str]) -> None:
    create_user_with_cli(settings, tmp_path, "gail")
    for _ in range(settings.lockout_threshold):
        assert try_sign_in(served, rp, "gail", "wrong password").status_code == 200
    locked = try_sign_in(served, rp, "gail")
    assert locked.status_code in (200, 429) and "Too many failed sign-ins" in locked.text

    unlocked = succeeded(ostiary(settings, tmp_path, "users", "unlock", "gail", "--json"))
    assert unlocked["username"] == "gail" and unlocked["unlocked"] is True
    assert try_sign_in(served, rp, "gail").status_code == 303
    assert [kind for kind, _ in cli_audit(settings)] == ["user.unlocked"]
    refused(ostiary(settings, tmp_path, "users", "unlock", "nobody"), "no user")


def test_users_delete_ends_their_sessions_and_tokens(
    settings: Settings, tmp_path: Path, served: str, rp: dict[str, str], resource_server: dict[str, str]
) -> None:
    create_user_with_cli(settings, tmp_path, "hank")
    tokens = sign_in(served, rp, "hank", "openid offline_access")
    assert introspect(served, tokens["refresh_token"], resource_server)["active"] is True

    deleted = succeeded(ostiary(settings, tmp_path, "users", "delete", "hank", "--json"))
    assert deleted["username"] == "hank" and deleted["deleted"] is True
    for value in (tokens["access_token"], tokens["refresh_token"]):
        assert introspect(served, value, resource_server) == {"active": False}
    assert try_sign_in(served, rp, "hank").status_code == 200
    assert cli_audit(settings) == [("user.deleted", deleted["sub"])]
    refused(ostiary(settings, tmp_path, "users", "delete", "hank"), "no user")


# Sessions.


def test_sessions_list_and_end_one_or_all(settings: Settings, tmp_path: Path, served: str, rp: dict[str, str]) -> None:
    create_user_with_cli(settings, tmp_path, "alice")
    bound = sign_in(served, rp, "alice", "openid")  # a browser whose family ends with its session
    offline = sign_in(served, rp, "alice", "openid offline_access")  # another browser, offline access
    bound_sid = jwt.decode(bound["id_token"], options={"verify_signature": False})["sid"]

    listed = succeeded(ostiary(settings, tmp_path, "sessions", "list", "--json", "alice"))
    assert len(listed) == 2 and bound_sid in {entry["sid"] for entry in listed}

    ended = succeeded(ostiary(settings, tmp_path, "sessions", "end", "--json", "alice", "--sid", bound_sid))
    assert ended == {"username": "alice", "ended": 1}
    assert refresh(served, rp, bound["refresh_token"]).json()["error"] == "invalid_grant"
    offline_refreshed = refresh(served, rp, offline["refresh_token"])
    assert offline_refreshed.status_code == 200, offline_refreshed.text
    remaining = succeeded(ostiary(settings, tmp_path, "sessions", "list", "--json", "alice"))
    offline_sid = jwt.decode(offline["id_token"], options={"verify_signature": False})["sid"]
    assert [entry["sid"] for entry in remaining] == [offline_sid]

    everything = succeeded(ostiary(settings, tmp_path, "sessions", "end", "--json", "alice", "--all"))
    assert everything == {"username": "alice", "ended": 1}
    assert succeeded(ostiary(settings, tmp_path, "sessions", "list", "--json", "alice")) == []
    assert refresh(served, rp, offline_refreshed.json()["refresh_token"]).status_code == 200  # offline access stays
    assert [kind for kind, _ in cli_audit(settings)] == ["session.ended", "session.ended"]

    refused(ostiary(settings, tmp_path, "sessions", "end", "alice", "--sid", bound_sid), "SID")
    refused(ostiary(settings, tmp_path, "sessions", "list", "nobody"), "USER", "nobody")


def refresh(base: str, client: dict[str, str], refresh_token: str) -> httpx.Response:
    return httpx.post(
        base + "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client["client_id"], client["client_secret"]),
    )
