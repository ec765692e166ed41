"""A small relying party and browser for driving the sign-in flow over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT_URI = "https://rp.example.com/callback"
LOGOUT_URI = "https://rp.example.com/signed-out"
PASSWORD = "correct horse battery staple"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location: str) -> dict[str, str]:
    values = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in values.values()), location
    return {key: value[0] for key, value in values.items()}


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))


def forms_of(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


class Browser:
    """Keeps cookies, never follows redirects: each step is looked at."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def authorize(self, **params: str) -> httpx.Response:
        return await self.http.get("/authorize", params=params)

    async def submit(self, page: httpx.Response, values: dict[str, str] | None = None, **button: str) -> httpx.Response:
        """Fill the page's form and submit it (``button`` picks e.g. decision="allow")."""
        (form,) = forms_of(page.text)
        data = {**form.fields, **(values or {})}
        for name, value in button.items():
            assert (name, value) in form.buttons, form.buttons
            data[name] = value
        return await self.http.post(form.action, data=data)

    async def sign_in(self, page: httpx.Response, username: str, password: str = PASSWORD) -> httpx.Response:
        assert 'name="password"' in page.text, page.text
        return await self.submit(page, {"username": username, "password": password})


@dataclass
class Flow:
    """One authorization request's secrets, as a relying party keeps them."""

    client_id: str
    verifier: str
    challenge: str
    state: str
    nonce: str

    @classmethod
    def start(cls, client_id: str) -> Flow:
        verifier, challenge = pkce()
        return cls(client_id, verifier, challenge, secrets.token_urlsafe(12), secrets.token_urlsafe(12))

    def params(self, scope: str = "openid profile email", **extra: str) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            **extra,
        }

    def token_form(self, code: str, **extra: str) -> dict[str, Any]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": self.verifier,
            **extra,
        }
