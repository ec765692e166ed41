"""Mail to the log carries working reset links, so an https issuer (a public deployment)
without an SMTP host refuses to start, naming the variable to set, unless mail to the log
is chosen explicitly with ``OSTIARY_MAIL_BACKEND=log``."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.process import serving
from tests.helpers import TestDatabase, make_settings, ostiary_env, run_ostiary


def sqlite(tmp_path: Path) -> TestDatabase:
    """A database of its own: the rule is about settings, not storage."""
    return TestDatabase("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'ostiary.db'}")


def test_an_https_issuer_without_smtp_refuses_to_start(tmp_path: Path) -> None:
    settings = make_settings(sqlite(tmp_path), tmp_path)
    env = ostiary_env(settings, OSTIARY_ISSUER="https://id.example.com")
    done = run_ostiary(["serve"], env, cwd=tmp_path)
    assert done.returncode != 0
    assert "OSTIARY_SMTP_HOST" in done.stderr and "OSTIARY_MAIL_BACKEND=log" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_https_issuer_with_mail_to_the_log_chosen_starts(tmp_path: Path) -> None:
    # Behind a TLS-terminating proxy in production; here plain HTTP on loopback.
    settings = make_settings(sqlite(tmp_path), tmp_path)
    issuer = f"https://127.0.0.1:{settings.port}"
    with serving(settings, tmp_path, OSTIARY_ISSUER=issuer, OSTIARY_MAIL_BACKEND="log") as (base_url, _):
        discovery = httpx.get(f"{base_url}/.well-known/openid-configuration", timeout=10)
        assert discovery.status_code == 200 and discovery.json()["issuer"] == issuer
