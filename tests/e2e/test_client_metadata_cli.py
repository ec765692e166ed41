"""End to end: client metadata in RFC 7591's names through the ``ostiary`` command
(``clients create|update --metadata FILE``, ``clients show``), and the initial access tokens
of ``ostiary clients registration-token create|list|revoke`` used at a served ``/register``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.settings import Settings
from tests.e2e.process import serving
from tests.e2e.test_cli_admin import SERVE_ENV, audit_rows, ostiary, refused, succeeded
from tests.helpers import TestDatabase, make_settings
from tests.oidc import REDIRECT_URI

REPORTS: dict[str, Any] = {
    "client_name": "Reports",
    "grant_types": ["client_credentials"],
    "scope": "reports:read reports:write",
    "token_endpoint_auth_method": "client_secret_post",
    "logo_uri": "https://reports.example.com/logo.png",
}


@pytest.fixture
def settings(database: TestDatabase, tmp_path: Path) -> Settings:
    return make_settings(database, tmp_path)


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serving(settings, tmp_path, **SERVE_ENV, OSTIARY_REGISTRATION="initial-token") as (base, _):
        yield base


def metadata_file(tmp_path: Path, document: Any, name: str = "client.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return str(path)


def token(base: str, client: dict[str, Any], method: str) -> httpx.Response:
    form = {"grant_type": "client_credentials"}
    if method == "client_secret_post":
        form |= {"client_id": client["client_id"], "client_secret": client["client_secret"]}
        return httpx.post(base + "/token", data=form)
    return httpx.post(base + "/token", data=form, auth=(client["client_id"], client["client_secret"]))


def test_clients_create_takes_a_metadata_document(settings: Settings, tmp_path: Path, served: str) -> None:
    created = succeeded(
        ostiary(settings, tmp_path, "clients", "create", "--metadata", metadata_file(tmp_path, REPORTS), "--json")
    )
    assert {key: created[key] for key in REPORTS} == REPORTS
    assert created["response_types"] == [] and created["redirect_uris"] == []
    assert token(served, created, "client_secret_post").status_code == 200
    assert token(served, created, "client_secret_basic").status_code == 401

    shown = succeeded(ostiary(settings, tmp_path, "clients", "show", "--", created["client_id"]))
    assert shown == {key: value for key, value in created.items() if key != "client_secret"}
    listed = succeeded(ostiary(settings, tmp_path, "clients", "list", "--json"))
    assert listed == [shown]
    assert [row[:2] for row in audit_rows(settings) if row[0] == "client.created"] == [("client.created", "cli")]


def test_options_given_with_a_document_win(settings: Settings, tmp_path: Path, served: str) -> None:
    path = metadata_file(tmp_path, REPORTS)
    created = succeeded(
        ostiary(
            settings, tmp_path, "clients", "create", "--metadata", path, "--name", "Reports v2", "--introspection",
            "--json",
        )
    )  # fmt: skip
    assert created["client_name"] == "Reports v2" and created["introspection"] is True
    assert created["token_endpoint_auth_method"] == "client_secret_post"


def test_a_code_flow_client_from_a_document_gets_rfc_7591s_defaults(settings: Settings, tmp_path: Path) -> None:
    path = metadata_file(tmp_path, {"client_name": "Photo Prints", "redirect_uris": [REDIRECT_URI]})
    created = succeeded(ostiary(settings, tmp_path, "clients", "create", "--metadata", path, "--json"))
    assert created["grant_types"] == ["authorization_code"] and created["response_types"] == ["code"]
    assert created["token_endpoint_auth_method"] == "client_secret_basic"

    public = metadata_file(tmp_path, {"client_name": "SPA", "redirect_uris": [REDIRECT_URI]}, "spa.json")
    spa = succeeded(ostiary(settings, tmp_path, "clients", "create", "--metadata", public, "--public", "--json"))
    assert spa["token_endpoint_auth_method"] == "none" and "client_secret" not in spa


@pytest.mark.parametrize(
    "document, expected",
    [
        (
            {**REPORTS, "contacts": ["ops@example.com"], "software_id": "x"},
            ["contacts, software_id", "unknown client metadata"],
        ),
        ({**REPORTS, "grant_types": "client_credentials"}, ["grant_types", "array"]),
        ({**REPORTS, "logo_uri": "http://reports.example.com/logo.png"}, ["logo_uri", "https"]),
        ({**REPORTS, "token_endpoint_auth_method": "client_secret_jwt"}, ["token_endpoint_auth_method"]),
        ({"client_name": "x", "redirect_uris": ["http://rp.example.com/cb"]}, ["redirect_uris", "https"]),
        ({"grant_types": ["client_credentials"]}, ["--name"]),
        ("[1, 2]", ["--metadata", "JSON object"]),
        ("{not json", ["--metadata", "not JSON"]),
    ],
)
def test_a_bad_document_is_refused_naming_what_is_wrong(
    settings: Settings, tmp_path: Path, document: Any, expected: list[str]
) -> None:
    path = metadata_file(tmp_path, document)
    refused(ostiary(settings, tmp_path, "clients", "create", "--metadata", path), *expected)
    refused(
        ostiary(settings, tmp_path, "clients", "create", "--metadata", str(tmp_path / "missing.json")), "cannot read"
    )
    assert succeeded(ostiary(settings, tmp_path, "clients", "list", "--json")) == []


def test_clients_update_takes_a_metadata_document(settings: Settings, tmp_path: Path, served: str) -> None:
    created = succeeded(
        ostiary(settings, tmp_path, "clients", "create", "--metadata", metadata_file(tmp_path, REPORTS), "--json")
    )
    change = metadata_file(
        tmp_path, {"token_endpoint_auth_method": "client_secret_basic", "logo_uri": None}, "change.json"
    )
    updated = succeeded(
        ostiary(settings, tmp_path, "clients", "update", "--metadata", change, "--json", "--", created["client_id"])
    )
    assert updated["token_endpoint_auth_method"] == "client_secret_basic" and "logo_uri" not in updated
    assert updated["scope"] == REPORTS["scope"]  # what the document leaves out stays
    assert token(served, created, "client_secret_basic").status_code == 200
    assert token(served, created, "client_secret_post").status_code == 401

    bad = metadata_file(tmp_path, {"token_endpoint_auth_method": "none"}, "bad.json")
    refused(
        ostiary(settings, tmp_path, "clients", "update", "--metadata", bad, "--", created["client_id"]),
        "token_endpoint_auth_method",
    )


def test_registration_tokens_let_clients_register(settings: Settings, tmp_path: Path, served: str) -> None:
    made = succeeded(
        ostiary(settings, tmp_path, "clients", "registration-token", "create", "--max-uses", "1", "--expires-in",
                "1h", "--json")
    )  # fmt: skip
    assert made["max_uses"] == 1 and made["expires_in"] == 3600
    document = {"client_name": "Photo Prints", "redirect_uris": [REDIRECT_URI]}

    def register(value: str) -> httpx.Response:
        return httpx.post(served + "/register", json=document, headers={"Authorization": f"Bearer {value}"})

    first = register(made["token"])
    assert first.status_code == 201, first.text
    assert register(made["token"]).status_code == 401
    (listed,) = succeeded(ostiary(settings, tmp_path, "clients", "registration-token", "list", "--json"))
    assert listed["id"] == made["id"] and listed["uses"] == 1 and listed["state"] == "used up"
    assert made["token"] not in json.dumps(listed)

    shown = succeeded(ostiary(settings, tmp_path, "clients", "show", "--", first.json()["client_id"]))
    assert shown["self_registered"] is True and shown["first_party"] is False

    plain = ostiary(settings, tmp_path, "clients", "registration-token", "create")
    assert plain.returncode == 0, plain.stderr
    (value,) = [line.split()[-1] for line in plain.stdout.splitlines() if line.startswith("token:")]
    (token_id,) = [line.split()[-1] for line in plain.stdout.splitlines() if line.startswith("id:")]
    revoked = succeeded(ostiary(settings, tmp_path, "clients", "registration-token", "revoke", "--json", token_id))
    assert revoked == {"id": token_id, "revoked": True, "changed": True}
    assert register(value).status_code == 401
    refused(ostiary(settings, tmp_path, "clients", "registration-token", "revoke", "nope"), "ID", "nope")
    refused(ostiary(settings, tmp_path, "clients", "registration-token", "create", "--max-uses", "0"), "--max-uses")

    kinds = [(kind, actor) for kind, actor, _ in audit_rows(settings) if kind.startswith("registration_token.")]
    assert kinds == [
        ("registration_token.created", "cli"),
        ("registration_token.used", "registration"),
        ("registration_token.created", "cli"),
        ("registration_token.revoked", "cli"),
    ]


def test_a_private_key_jwt_client_from_the_command_line(settings: Settings, tmp_path: Path) -> None:
    created = succeeded(
        ostiary(
            settings,
            tmp_path,
            "clients",
            "create",
            "--name",
            "bank sync",
            "--scope",
            "reports:read",
            "--token-endpoint-auth-method",
            "private_key_jwt",
            "--jwks-uri",
            "https://bank.example.com/jwks.json",
            "--token-endpoint-auth-signing-alg",
            "PS256",
            "--json",
        )
    )
    assert "client_secret" not in created and created["public"] is False
    assert created["jwks_uri"] == "https://bank.example.com/jwks.json"
    assert created["token_endpoint_auth_signing_alg"] == "PS256"
    refused(ostiary(settings, tmp_path, "clients", "rotate-secret", "--", created["client_id"]), "no secret to rotate")
    refused(
        ostiary(
            settings, tmp_path, "clients", "update", "--jwks-uri", "http://bank.example.com/k", created["client_id"]
        ),
        "--jwks-uri",
        "https",
    )
    updated = succeeded(
        ostiary(
            settings,
            tmp_path,
            "clients",
            "update",
            "--require-pushed-authorization-requests",
            "--json",
            "--",
            created["client_id"],
        )
    )
    assert updated["require_pushed_authorization_requests"] is True
