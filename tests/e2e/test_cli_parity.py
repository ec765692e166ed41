"""End to end: the administration commands that match the admin API, run as ``ostiary``.

``ostiary users list | show | require-password-change | send-reset-link``, ``--json`` on
``users reset-mfa | set-password``, the admin role (``users create --admin``, ``users
update --admin/--no-admin``), ``ostiary grants list | end`` (and the older ``grants
revoke``), and ``ostiary audit list --until | --before``: what each prints with ``--json``,
what it changes for a served ``ostiary`` (a refresh token that stops working, a sign-in
that asks for a new password, a mail queued), the audit rows naming the actor ``cli``, and
one clear line with a non-zero exit for an unknown user or bad input, never a traceback.

Most command lines of a test run one after another in one process calling the command's
entry point (:class:`tests.e2e.process.Commands`; each start of ``ostiary`` costs a second
or two of imports); the error paths also run the installed ``ostiary`` itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from server.settings import Settings
from server.storage.engine import make_engine
from server.storage.models import AuditEvent, MailOutbox
from server.users.reset import LOOKUP_TEMPLATE
from tests.e2e.process import Commands, serving, sign_in
from tests.helpers import TestDatabase, make_settings, ostiary_env, run_ostiary
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, forms_of

SERVE_ENV = {
    "OSTIARY_CLIENT_CACHE_TTL": "0",
    "OSTIARY_RATE_LIMIT_LOGIN_PER_MINUTE": "1000",
    "OSTIARY_ARGON2_TIME_COST": "2",
    "OSTIARY_ARGON2_MEMORY_KIB": "19456",
}
USER_FIELDS = {
    "id",
    "sub",
    "username",
    "email",
    "email_verified",
    "name",
    "disabled",
    "admin",
    "must_change_password",
    "created_at",
}

#: the process running each test's commands, started by its first one
_COMMANDS: dict[tuple[str, Path], Commands] = {}


@pytest.fixture(autouse=True)
def _end_commands(database: TestDatabase) -> Iterator[None]:
    """Ends the test's commands process before its database goes."""
    yield
    while _COMMANDS:
        _COMMANDS.popitem()[1].close()


@pytest.fixture
def settings(database: TestDatabase, tmp_path: Path) -> Settings:
    return make_settings(database, tmp_path)


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serving(settings, tmp_path, **SERVE_ENV) as (base, _):
        yield base


def ostiary(settings: Settings, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    key = (settings.database_url, tmp_path)
    if key not in _COMMANDS:
        _COMMANDS[key] = Commands(ostiary_env(settings, **SERVE_ENV), tmp_path)
    return _COMMANDS[key].run(*args, stdin=stdin)


def succeeded(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a command printed, once it exited 0."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """A non-zero exit, nothing on stdout, and one line on stderr that says what is wrong."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ostiary: ")
    for text in expected:
        assert text in lines[0], lines[0]


def bad_usage(result: subprocess.CompletedProcess[str], option: str) -> None:
    """argparse's refusal: exit 2, the usage and one line naming the option."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "error:" in last and option in last, result.stderr


def create_user(settings: Settings, tmp_path: Path, username: str, *options: str) -> dict[str, Any]:
    email = () if "--no-email" in options else ("--email", f"{username}@example.com")
    extra = [option for option in options if option != "--no-email"]
    created: dict[str, Any] = succeeded(
        ostiary(
            settings,
            tmp_path,
            *("users", "create", "--username", username, *email, *extra, "--password-stdin", "--json"),
            stdin=PASSWORD + "\n",
        )
    )
    return created


def create_rp(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """A first-party relying party (no consent page) with refresh tokens."""
    created: dict[str, str] = succeeded(
        ostiary(
            settings,
            tmp_path,
            *("clients", "create", "--name", "photos", "--first-party", "--redirect-uri", REDIRECT_URI),
            *("--grant-type", "authorization_code", "--grant-type", "refresh_token"),
            *("--scope", "openid offline_access", "--json"),
        )
    )
    return created


def audit_rows(settings: Settings) -> list[tuple[str, str | None, str | None]]:
    """``(kind, actor, user_sub)`` of every audit row, oldest first."""

    async def read() -> list[tuple[str, str | None, str | None]]:
        engine = make_engine(settings.database_url)
        try:
            async with engine.connect() as connection:
                query = select(AuditEvent.kind, AuditEvent.actor, AuditEvent.user_sub).order_by(AuditEvent.id)
                return [(row.kind, row.actor, row.user_sub) for row in await connection.execute(query)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def queued_mail(settings: Settings) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        engine = make_engine(settings.database_url)
        try:
            async with engine.connect() as connection:
                query = select(MailOutbox.recipient, MailOutbox.template).order_by(MailOutbox.id)
                return [(row.recipient, row.template) for row in await connection.execute(query)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def refresh(base: str, client: dict[str, str], refresh_token: str) -> httpx.Response:
    return httpx.post(
        base + "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(client["client_id"], client["client_secret"]),
    )


def try_sign_in(base: str, client: dict[str, str], username: str, password: str = PASSWORD) -> httpx.Response:
    """The password step of the code flow; 303 when it signed in and got a code."""
    with httpx.Client(base_url=base) as http:
        page = http.get("/authorize", params=Flow.start(client["client_id"]).params(scope="openid"))
        assert page.status_code == 200, page.headers.get("location")
        (form,) = forms_of(page.text)
        return http.post(form.action, data={**form.fields, "username": username, "password": password})


# Users: list and the admin role.


def test_users_list_pages_by_id_and_searches(settings: Settings, tmp_path: Path) -> None:
    created = [
        create_user(settings, tmp_path, "ann"),
        create_user(settings, tmp_path, "Bo_b", "--admin"),
        create_user(settings, tmp_path, "cy", "--no-email"),
    ]
    assert [user["admin"] for user in created] == [False, True, False]
    everyone = succeeded(ostiary(settings, tmp_path, "users", "list", "--json"))
    assert [user["username"] for user in everyone] == ["ann", "Bo_b", "cy"]
    assert set(everyone[0]) == USER_FIELDS
    assert everyone[1]["sub"] == created[1]["sub"] and everyone[1]["admin"] is True
    assert everyone[2]["email"] is None and everyone[0]["email"] == "ann@example.com"

    first = succeeded(ostiary(settings, tmp_path, "users", "list", "--limit", "2", "--json"))
    after = str(first[-1]["id"])
    rest = succeeded(ostiary(settings, tmp_path, "users", "list", "--limit", "2", "--after", after, "--json"))
    assert [user["username"] for user in first + rest] == ["ann", "Bo_b", "cy"]
    last = str(rest[-1]["id"])
    assert succeeded(ostiary(settings, tmp_path, "users", "list", "--after", last, "--json")) == []

    def search(query: str) -> list[str]:
        found = succeeded(ostiary(settings, tmp_path, "users", "list", "--query", query, "--json"))
        return [user["username"] for user in found]

    assert search("BO") == ["Bo_b"]
    assert search("_") == ["Bo_b"]  # a literal underscore, not "any character"
    assert search("%") == []
    assert search("EXAMPLE.COM") == ["ann", "Bo_b"]  # by e-mail address

    text = ostiary(settings, tmp_path, "users", "list", "--limit", "2")
    assert text.returncode == 0 and "ann" in text.stdout and f"--after {first[-1]['id']}" in text.stdout
    bad_usage(ostiary(settings, tmp_path, "users", "list", "--limit", "0"), "--limit")
    bad_usage(ostiary(settings, tmp_path, "users", "list", "--after", "x"), "--after")


def test_users_update_gives_and_takes_the_admin_role(settings: Settings, tmp_path: Path) -> None:
    create_user(settings, tmp_path, "dee")
    made = succeeded(ostiary(settings, tmp_path, "users", "update", "dee", "--admin", "--json"))
    assert made["admin"] is True and made["username"] == "dee"
    # the last enabled administrator keeps the role
    refused(ostiary(settings, tmp_path, "users", "update", "dee", "--no-admin"), "last enabled administrator")
    create_user(settings, tmp_path, "eve", "--admin")
    taken = succeeded(ostiary(settings, tmp_path, "users", "update", "dee", "--no-admin", "--json"))
    assert taken["admin"] is False
    updated = [row for row in audit_rows(settings) if row[0] == "user.updated"]
    assert [(kind, actor) for kind, actor, _ in updated] == [("user.updated", "cli")] * 3
    refused(ostiary(settings, tmp_path, "users", "update", "nobody", "--admin"), "USER", "nobody")


# Users: one account's overview and the actions on it.


def test_users_show_require_password_change_and_reset_mfa(settings: Settings, tmp_path: Path, served: str) -> None:
    rp = create_rp(settings, tmp_path)
    eve = create_user(settings, tmp_path, "eve")
    tokens = sign_in(served, rp, "eve", "openid offline_access")
    sid = jwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]
    for _ in range(settings.lockout_threshold):
        assert try_sign_in(served, rp, "eve", "wrong password").status_code == 200

    shown = succeeded(ostiary(settings, tmp_path, "users", "show", "eve", "--json"))
    assert shown["sub"] == eve["sub"] and shown["mfa_enrolled"] is False
    assert shown["locked_factors"] == ["password"]
    assert [session["sid"] for session in shown["sessions"]] == [sid]
    (grant,) = shown["grants"]
    assert grant["client_id"] == rp["client_id"] and grant["offline"] is True and grant["session_sid"] is None
    text = ostiary(settings, tmp_path, "users", "show", "eve")
    assert text.returncode == 0, text.stderr
    assert "second factor:        no" in text.stdout and "locked:               password" in text.stdout
    assert sid in text.stdout and grant["grant_id"] in text.stdout

    succeeded(ostiary(settings, tmp_path, "users", "unlock", "eve", "--json"))
    required = succeeded(ostiary(settings, tmp_path, "users", "require-password-change", "eve", "--json"))
    assert required["must_change_password"] is True and required["changed"] is True
    again = succeeded(ostiary(settings, tmp_path, "users", "require-password-change", "eve", "--json"))
    assert again["changed"] is False
    page = try_sign_in(served, rp, "eve")
    assert page.status_code == 200 and 'name="new_password"' in page.text  # no code before a new password

    reset = succeeded(ostiary(settings, tmp_path, "users", "reset-mfa", "eve", "--json"))
    assert reset == {"sub": eve["sub"], "username": "eve", "had_second_factor": False}

    changed = succeeded(
        ostiary(
            settings,
            tmp_path,
            *("users", "set-password", "--username", "eve", "--password-stdin", "--json"),
            stdin="a brand new passphrase\n",
        )
    )
    assert changed == {"sub": eve["sub"], "username": "eve", "families_ended": 1}
    assert refresh(served, rp, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    after = succeeded(ostiary(settings, tmp_path, "users", "show", "eve", "--json"))
    assert after["must_change_password"] is False and after["sessions"] == [] and after["grants"] == []

    mine = [
        (kind, actor)
        for kind, actor, sub in audit_rows(settings)
        if sub == eve["sub"] and actor == "cli" and kind != "user.created"
    ]
    assert mine == [
        ("user.unlocked", "cli"),
        ("user.password_change_required", "cli"),
        ("mfa.reset", "cli"),
        ("user.password_changed", "cli"),
    ]


def test_users_send_reset_link(settings: Settings, tmp_path: Path) -> None:
    fay = create_user(settings, tmp_path, "fay")
    create_user(settings, tmp_path, "gus", "--no-email")
    sent = succeeded(ostiary(settings, tmp_path, "users", "send-reset-link", "fay", "--json"))
    assert sent == {"sub": fay["sub"], "username": "fay", "email": "fay@example.com", "queued": True}
    assert queued_mail(settings) == [("fay@example.com", LOOKUP_TEMPLATE)]

    refused(ostiary(settings, tmp_path, "users", "send-reset-link", "gus", "--json"), "gus", "no e-mail address")
    succeeded(ostiary(settings, tmp_path, "users", "disable", "fay", "--json"))
    refused(ostiary(settings, tmp_path, "users", "send-reset-link", "fay"), "disabled")
    assert queued_mail(settings) == [("fay@example.com", LOOKUP_TEMPLATE)]  # nothing more
    sent_rows = [(actor, sub) for kind, actor, sub in audit_rows(settings) if kind == "user.reset_link_sent"]
    assert sent_rows == [("cli", fay["sub"])]


def test_an_unknown_user_is_one_line_and_a_failure_everywhere(settings: Settings, tmp_path: Path) -> None:
    commands = [
        ("users", "show", "nobody", "--json"),
        ("users", "require-password-change", "nobody", "--json"),
        ("users", "send-reset-link", "nobody", "--json"),
        ("users", "reset-mfa", "nobody", "--json"),
        ("grants", "list", "nobody", "--json"),
        ("grants", "end", "nobody", "--all", "--json"),
    ]
    for command in commands:
        refused(ostiary(settings, tmp_path, *command), "USER", "no user named 'nobody'")
    refused(
        ostiary(
            settings,
            tmp_path,
            "users",
            "set-password",
            "--username",
            "nobody",
            "--password-stdin",
            "--json",
            stdin="a brand new passphrase\n",
        ),
        "--username",
        "nobody",
    )
    # the installed command itself, as an operator runs it
    for command in (("users", "show", "nobody"), ("users", "send-reset-link", "nobody")):
        refused(run_ostiary(list(command), ostiary_env(settings), cwd=tmp_path), "USER", "nobody")
    assert audit_rows(settings) == []


# Grants.


def test_grants_list_and_end_one_or_all(settings: Settings, tmp_path: Path, served: str) -> None:
    rp = create_rp(settings, tmp_path)
    hal = create_user(settings, tmp_path, "hal")
    create_user(settings, tmp_path, "ivy")
    bound = sign_in(served, rp, "hal", "openid")
    offline = sign_in(served, rp, "hal", "openid offline_access")
    other = sign_in(served, rp, "hal", "openid offline_access")
    ivys = sign_in(served, rp, "ivy", "openid offline_access")

    listed = succeeded(ostiary(settings, tmp_path, "grants", "list", "hal", "--json"))
    assert len(listed) == 3 and [grant["offline"] for grant in listed] == [True, True, False]
    created = [datetime.fromisoformat(grant["created_at"]) for grant in listed]
    assert created == sorted(created, reverse=True)  # newest first
    bound_sid = jwt.decode(bound["id_token"], options={"verify_signature": False})["sid"]
    assert listed[2]["session_sid"] == bound_sid and listed[2]["scope"] == "openid"
    (ivy_grant,) = succeeded(ostiary(settings, tmp_path, "grants", "list", "ivy", "--json"))

    newest = listed[0]["grant_id"]
    ended = succeeded(ostiary(settings, tmp_path, "grants", "end", "hal", "--grant", newest, "--json"))
    assert ended == {"username": "hal", "ended": 1}
    assert refresh(served, rp, other["refresh_token"]).json()["error"] == "invalid_grant"
    kept = refresh(served, rp, offline["refresh_token"])
    assert kept.status_code == 200, kept.text
    left = succeeded(ostiary(settings, tmp_path, "grants", "list", "hal", "--json"))
    assert [grant["grant_id"] for grant in left] == [grant["grant_id"] for grant in listed[1:]]

    refused(ostiary(settings, tmp_path, "grants", "end", "hal", "--grant", newest), "GRANT", newest)
    refused(ostiary(settings, tmp_path, "grants", "end", "hal", "--grant", ivy_grant["grant_id"]), "GRANT")
    refused(ostiary(settings, tmp_path, "grants", "end", "hal", "--grant", "x", "--client", "y"), "--client")
    bad_usage(ostiary(settings, tmp_path, "grants", "end", "hal"), "--grant")

    cid = rp["client_id"]
    other_client = succeeded(ostiary(settings, tmp_path, "grants", "end", "hal", "--all", f"--client={cid}x", "--json"))
    assert other_client == {"username": "hal", "ended": 0}
    everything = succeeded(ostiary(settings, tmp_path, "grants", "end", "hal", "--all", f"--client={cid}", "--json"))
    assert everything == {"username": "hal", "ended": 2}
    assert succeeded(ostiary(settings, tmp_path, "grants", "list", "hal", "--json")) == []
    assert refresh(served, rp, kept.json()["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(served, rp, ivys["refresh_token"]).status_code == 200  # another user's stays

    revoked = ostiary(settings, tmp_path, "grants", "revoke", "--user", "ivy")
    assert revoked.returncode == 0 and "revoked 1 grant(s)" in revoked.stdout
    refused(ostiary(settings, tmp_path, "grants", "revoke", "--user", "nobody"), "--user", "nobody")

    by_cli = [(kind, sub) for kind, actor, sub in audit_rows(settings) if kind.startswith("grant")]
    assert by_cli == [
        ("grant.revoked", hal["sub"]),
        ("grants.revoked", hal["sub"]),
        ("grants.revoked", hal["sub"]),
        ("grants.revoked", succeeded(ostiary(settings, tmp_path, "users", "show", "ivy", "--json"))["sub"]),
    ]
    assert {actor for kind, actor, _ in audit_rows(settings) if kind.startswith("grant")} == {"cli"}


# Audit: paging and the end of the window.


def test_audit_list_pages_by_id_and_stops_at_until(settings: Settings, tmp_path: Path) -> None:
    for name in ("jo", "kim", "lee"):
        create_user(settings, tmp_path, name)
    for name in ("jo", "kim", "lee"):
        succeeded(ostiary(settings, tmp_path, "users", "require-password-change", name, "--json"))

    def listed(*options: str) -> list[dict[str, Any]]:
        result = ostiary(settings, tmp_path, "audit", "list", "--json", *options)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    everything = listed()
    assert len(everything) == 6 and {event["actor"] for event in everything[:3]} == {"cli"}
    pages, before = [], None
    while True:
        page = listed("--limit", "4", *(("--before", str(before)) if before else ()))
        if not page:
            break
        pages.append(page)
        before = page[-1]["id"]
    assert [len(page) for page in pages] == [4, 2]
    assert [event["id"] for page in pages for event in page] == [event["id"] for event in everything]

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert listed("--until", future) == everything
    assert listed("--until", "2000-01-01T00:00:00Z") == []
    assert listed("--until", "1h") == []  # an hour ago: before all of it
    assert listed("--since", "2000-01-01", "--until", future, "--limit", "1") == everything[:1]
    assert listed("--type", "user.password_change_required", "--before", str(everything[1]["id"])) == everything[2:3]

    text = ostiary(settings, tmp_path, "audit", "list", "--limit", "1")
    assert text.returncode == 0 and f"id={everything[0]['id']}" in text.stdout
    bad_usage(ostiary(settings, tmp_path, "audit", "list", "--until", "tomorrow"), "--until")
    bad_usage(ostiary(settings, tmp_path, "audit", "list", "--before", "0"), "--before")
    bad_usage(ostiary(settings, tmp_path, "audit", "list", "--before", "x"), "--before")


# Keys: what the admin API's /keys answers, with --json.


def test_keys_rotate_and_revoke_print_json(settings: Settings, tmp_path: Path) -> None:
    staged = succeeded(ostiary(settings, tmp_path, "keys", "rotate", "--alg", "ES256", "--json"))
    assert staged["state"] == "next" and staged["alg"] == "ES256" and staged["activates_at"]
    active = succeeded(ostiary(settings, tmp_path, "keys", "rotate", "--now", "--json"))
    assert active["state"] == "active" and active["activated_at"]
    revoked = succeeded(ostiary(settings, tmp_path, "keys", "revoke", staged["kid"], "--json"))
    assert revoked == {"kid": staged["kid"], "state": "removed", "replaced_by": None}
    states = {key["kid"]: key["state"] for key in succeeded(ostiary(settings, tmp_path, "keys", "list", "--json"))}
    assert states[staged["kid"]] == "removed" and states[active["kid"]] == "active"
    kinds = [(kind, actor) for kind, actor, _ in audit_rows(settings) if kind.startswith("key.")]
    assert ("key.revoked", "cli") in kinds and {actor for _, actor in kinds} == {"cli"}
    refused(ostiary(settings, tmp_path, "keys", "revoke", staged["kid"], "--json"), staged["kid"])
