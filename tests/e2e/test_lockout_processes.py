"""Login lockout across two ``ostiary serve`` processes on one PostgreSQL database.

The counters live in the database, and each attempt is counted under the account's row
lock before its password is checked: however the attempts are spread over processes, the
account locks at the threshold, and no more than the threshold are ever checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from tests.e2e.process import create_client_with_cli, create_user_with_cli, serving
from tests.helpers import TestDatabase, make_settings
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, forms_of

THRESHOLD = 4
WRONG = "not the password at all"
MISMATCH = "That username and password do not match. "
COUNTDOWN = [
    MISMATCH + "3 attempts left before the account is locked.",
    MISMATCH + "2 attempts left before the account is locked.",
    MISMATCH + "1 attempt left before the account is locked.",
    MISMATCH + "This account is now locked for 15 minutes.",
]


@contextmanager
def two_servers(database: TestDatabase, tmp_path: Path, **env: str) -> Iterator[tuple[str, str, str]]:
    """Two processes on one database and one key directory; yields both base URLs and a
    first-party client's id."""
    first, second = make_settings(database, tmp_path), make_settings(database, tmp_path)
    assert first.port != second.port and first.keys_dir == second.keys_dir
    create_user_with_cli(first, tmp_path, "alice")
    client = create_client_with_cli(
        first, tmp_path, "--grant-type", "authorization_code", "--scope", "openid", "--redirect-uri", REDIRECT_URI
    )
    with ExitStack() as stack:
        bases = []
        for name, settings in (("a", first), ("b", second)):
            (tmp_path / name).mkdir()
            base, _log = stack.enter_context(serving(settings, tmp_path / name, **env))
            bases.append(base)
        yield bases[0], bases[1], client["client_id"]


def login_form(http: httpx.Client, client_id: str) -> dict[str, str]:
    page = http.get("/authorize", params=Flow.start(client_id).params(scope="openid"))
    assert page.status_code == 200 and 'name="password"' in page.text, page.text
    (form,) = forms_of(page.text)
    return form.fields


def error_of(response: httpx.Response) -> str:
    start = response.text.index('id="login-error">') + len('id="login-error">')
    return response.text[start : response.text.index("</div>", start)].strip()


def test_wrong_passwords_alternating_between_processes_lock_the_account(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    env = {"OSTIARY_LOCKOUT_THRESHOLD": str(THRESHOLD)}
    with (
        two_servers(postgres_database, tmp_path, **env) as (a, b, client_id),
        httpx.Client(base_url=a) as on_a,
        httpx.Client(base_url=b) as on_b,
    ):
        forms = {on_a: login_form(on_a, client_id), on_b: login_form(on_b, client_id)}

        def attempt(http: httpx.Client, password: str) -> httpx.Response:
            return http.post("/login", data={**forms[http], "username": "alice", "password": password})

        messages = []
        for http in (on_a, on_b, on_a, on_b):
            answered = attempt(http, WRONG)
            assert answered.status_code == 200, answered.text
            messages.append(error_of(answered))
        assert messages == COUNTDOWN
        for http in (on_a, on_b):
            refused = attempt(http, PASSWORD)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) > 0
            assert error_of(refused) == "Too many failed sign-ins for this account. Try again in 15 minutes."


async def _burst(bases: list[str], client_id: str, per_server: int) -> list[httpx.Response]:
    async def guesses(base: str) -> list[httpx.Response]:
        # No keep-alive: each guess on its own connection, all at once.
        limits = httpx.Limits(max_keepalive_connections=0, max_connections=per_server)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            page = await http.get("/authorize", params=Flow.start(client_id).params(scope="openid"))
            (form,) = forms_of(page.text)
            data = {**form.fields, "username": "alice", "password": WRONG}
            return await asyncio.gather(*(http.post("/login", data=data) for _ in range(per_server)))

    results = await asyncio.gather(*(guesses(base) for base in bases))
    return [response for responses in results for response in responses]


def test_concurrent_guesses_on_both_processes_check_no_more_than_the_threshold(
    postgres_database: TestDatabase, tmp_path: Path
) -> None:
    # The per-address limit off: every guess reaches the lockout.
    env = {"OSTIARY_LOCKOUT_THRESHOLD": str(THRESHOLD), "OSTIARY_RATE_LIMIT_LOGIN_PER_MINUTE": "0"}
    with two_servers(postgres_database, tmp_path, **env) as (a, b, client_id):
        responses = asyncio.run(_burst([a, b], client_id, per_server=10))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * THRESHOLD + [429] * (20 - THRESHOLD)
        # Counted one after the other: each step of the countdown was shown once.
        assert sorted(error_of(r) for r in responses if r.status_code == 200) == sorted(COUNTDOWN)
        with httpx.Client(base_url=a) as http:
            form = login_form(http, client_id)
            right = http.post("/login", data={**form, "username": "alice", "password": PASSWORD})
            assert right.status_code == 429
