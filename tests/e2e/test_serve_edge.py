"""``ostiary serve`` as operators run it: whom it takes for the client, and what reaches its log.

The flow tests serve the app in the test's own process; these run the real command, so the
uvicorn configuration and the logging that ``ostiary serve`` sets up are what is tested.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.process import serving
from tests.helpers import TestDatabase, make_settings

FORGED = "203.0.113.9"


def access_lines(log: list[str]) -> list[str]:
    return [line for line in log if "ostiary.access" in line]


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"], ids=["no proxy trusted", "loopback proxy trusted"])
def test_forwarding_headers_count_only_from_a_trusted_proxy_and_log_lines_cannot_be_forged(
    database: TestDatabase, tmp_path: Path, trusted: str
) -> None:
    settings = make_settings(database, tmp_path)
    env = {"OSTIARY_ACCESS_LOG": "true", "OSTIARY_TRUSTED_PROXIES": trusted, "OSTIARY_LOG_FORMAT": "text"}
    with serving(settings, tmp_path, **env) as (base, log):
        response = httpx.get(
            base + "/forged%0A127.0.0.1%20%22GET%20/admin%22%20200", headers={"X-Forwarded-For": FORGED}
        )
        assert response.status_code == 404

    (line,) = [line for line in access_lines(log) if "forged" in line]
    assert "forged\\n127.0.0.1" in line
    assert not any(line.startswith("127.0.0.1") for line in log), "a request forged a line of its own"
    client = line.split("ostiary.access: ", 1)[1].split(" ", 1)[0]
    assert client == (FORGED if trusted else "127.0.0.1")
