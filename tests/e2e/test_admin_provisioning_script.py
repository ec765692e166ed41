"""End to end: the provisioning script of docs/admin.md, run as written.

The ```bash block of docs/admin.md is taken out of the document (so the documentation
cannot drift from what is tested) and run by ``bash`` against a served ``ostiary`` with a
``PATH`` that holds nothing but ``curl``: a script that needed ``jq``, ``sed`` or Python
would fail here. Its client and user are then looked up through the admin API and the
CLI, its client's secret is tried at the token endpoint, and the audit trail must name the
provisioning client as the actor.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.settings import Settings
from tests.e2e.process import serving
from tests.helpers import TestDatabase, make_settings, ostiary_env, run_ostiary

DOC = Path(__file__).resolve().parents[2] / "docs" / "admin.md"
SERVE_ENV = {"OSTIARY_ARGON2_TIME_COST": "2", "OSTIARY_ARGON2_MEMORY_KIB": "19456"}
#: what the script writes into the client and the user it makes (its JSON documents)
CLIENT_NAME = "Photo Prints"
USERNAME = "alice"


def provisioning_script() -> str:
    blocks = re.findall(r"^```bash\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "docs/admin.md should hold exactly one ```bash block: the provisioning script"
    script: str = blocks[0]
    return script


@pytest.fixture
def settings(database: TestDatabase, tmp_path: Path) -> Settings:
    return make_settings(database, tmp_path)


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serving(settings, tmp_path, **SERVE_ENV) as (base, _):
        yield base


@pytest.fixture
def provisioning_client(settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """The client the document tells an administrator to register, registered that way."""
    result = run_ostiary(
        [
            "clients",
            "create",
            "--name",
            "provisioning",
            "--grant-type",
            "client_credentials",
            "--scope",
            "ostiary:admin:clients ostiary:admin:users ostiary:admin:audit",
            "--json",
        ],
        ostiary_env(settings),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    return created


def run_script(base: str, client: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The script, by ``bash``, with only ``curl`` on the ``PATH`` and only its three variables set."""
    script = tmp_path / "provision.sh"
    script.write_text(provisioning_script(), encoding="utf-8")
    only_curl = tmp_path / "only-curl"
    only_curl.mkdir(exist_ok=True)
    curl = shutil.which("curl")
    assert curl is not None, "curl is not installed"
    if not (only_curl / "curl").exists():
        os.symlink(curl, only_curl / "curl")
    bash = shutil.which("bash")
    assert bash is not None
    env = {
        "PATH": str(only_curl),
        "OSTIARY_URL": base,
        "ADMIN_CLIENT_ID": client["client_id"],
        "ADMIN_CLIENT_SECRET": client["client_secret"],
    }
    return subprocess.run(
        [bash, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The ``name=value`` lines the script printed."""
    assert result.returncode == 0, (result.stdout, result.stderr)
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(values) == {"client_id", "client_secret", "user_sub"}, result.stdout
    assert all(values.values()), result.stdout
    return values


def admin_get(base: str, client: dict[str, Any], path: str) -> httpx.Response:
    answer = httpx.post(
        base + "/token",
        data={
            "grant_type": "client_credentials",
            "scope": "ostiary:admin:clients ostiary:admin:users ostiary:admin:audit",
        },
        auth=(client["client_id"], client["client_secret"]),
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    return httpx.get(base + "/admin/api/v1" + path, headers={"Authorization": f"Bearer {token}"})


def test_the_script_calls_nothing_but_curl() -> None:
    """Words of the usual helpers do not appear (the run below also has only curl on its PATH)."""
    script = provisioning_script()
    assert "curl " in script
    assert not re.search(r"\b(jq|python3?|sed|awk|grep|cut|tr|perl|wget|base64|openssl)\b", script)


def test_the_script_provisions_a_client_and_a_user(
    settings: Settings, tmp_path: Path, served: str, provisioning_client: dict[str, Any]
) -> None:
    made = printed(run_script(served, provisioning_client, tmp_path))

    client = admin_get(served, provisioning_client, f"/clients/{made['client_id']}")
    assert client.status_code == 200, client.text
    assert client.json()["client_name"] == CLIENT_NAME
    assert client.json()["redirect_uris"] == ["https://prints.example.com/callback"]
    assert "client_secret" not in client.json()
    user = admin_get(served, provisioning_client, f"/users/{made['user_sub']}")
    assert user.status_code == 200, user.text
    assert user.json()["username"] == USERNAME and user.json()["email_verified"] is True

    env = ostiary_env(settings)
    shown = run_ostiary(["clients", "show", "--", made["client_id"]], env, cwd=tmp_path)
    assert shown.returncode == 0 and json.loads(shown.stdout)["client_name"] == CLIENT_NAME, shown.stderr
    listed = run_ostiary(["users", "list", "--query", USERNAME, "--json"], env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [entry["sub"] for entry in json.loads(listed.stdout)] == [made["user_sub"]]

    # The printed secret is the client's: the token endpoint authenticates it (and then
    # refuses the made-up code), where a wrong secret is refused as a client.
    def exchange(secret: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": "made-up",
            "redirect_uri": "https://prints.example.com/callback",
        }
        return httpx.post(served + "/token", data=form, auth=(made["client_id"], secret))

    assert exchange(made["client_secret"]).json()["error"] == "invalid_grant"
    assert exchange("not-the-secret").status_code == 401


def test_the_audit_trail_names_the_provisioning_client(
    tmp_path: Path, served: str, provisioning_client: dict[str, Any]
) -> None:
    made = printed(run_script(served, provisioning_client, tmp_path))
    events = admin_get(served, provisioning_client, "/audit?limit=200")
    assert events.status_code == 200, events.text
    actor = f"client:{provisioning_client['client_id']}"
    by_kind = {event["kind"]: event for event in events.json()["items"] if event["actor"] == actor}
    assert by_kind["client.created"]["client_id"] == made["client_id"]
    assert by_kind["user.created"]["user_sub"] == made["user_sub"]
    assert by_kind["user.reset_link_sent"]["user_sub"] == made["user_sub"]


def test_a_second_run_stops_at_the_taken_username_and_says_why(
    tmp_path: Path, served: str, provisioning_client: dict[str, Any]
) -> None:
    printed(run_script(served, provisioning_client, tmp_path))
    again = run_script(served, provisioning_client, tmp_path)
    assert again.returncode != 0
    assert again.stdout == ""
    refused = again.stderr.strip().splitlines()[-1]
    assert refused.startswith("refused: ")
    problem = json.loads(refused.removeprefix("refused: "))
    assert problem["status"] == 422 and problem["type"] == "urn:ostiary:problem:validation"
    assert [error["field"] for error in problem["errors"]] == ["username"]
