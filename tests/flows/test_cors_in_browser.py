"""A browser app (a public client, PKCE, no secret) does the whole code flow with fetch()
from a page of its own origin, in Chromium; a page of another origin cannot read a thing.

The app's pages are served by a small HTTP server on another loopback port: a real
cross-origin page, as a single-page app is."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.async_api import Browser as Chromium

from tests.flows.conftest import SignIn
from tests.helpers import Client, create_client
from tests.oidc import PASSWORD

pytestmark = pytest.mark.anyio

#: the app: a button that starts the flow, and a callback that finishes it with fetch()
APP = """<!doctype html><title>app</title>
<button id="start">Sign in</button>
<script>
const issuer = ISSUER, clientId = CLIENT_ID, redirectUri = location.origin + "/callback";
const b64url = (bytes) =>
  btoa(String.fromCharCode(...bytes)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const form = (fields) => ({method: "POST", body: new URLSearchParams(fields)});
async function start() {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("verifier", verifier);
  sessionStorage.setItem("state", state);
  location = issuer + "/authorize?" + new URLSearchParams({response_type: "code", client_id: clientId,
    redirect_uri: redirectUri, scope: "openid profile offline_access", state, code_challenge: challenge,
    code_challenge_method: "S256"});
}
async function finish() {
  const params = new URLSearchParams(location.search);
  if (params.get("state") !== sessionStorage.getItem("state")) throw new Error("state mismatch");
  const discovery = await (await fetch(issuer + "/.well-known/openid-configuration")).json();
  const tokens = await (await fetch(discovery.token_endpoint, form({grant_type: "authorization_code",
    code: params.get("code"), redirect_uri: redirectUri, client_id: clientId,
    code_verifier: sessionStorage.getItem("verifier")}))).json();
  const userinfo = await (await fetch(discovery.userinfo_endpoint,
    {headers: {Authorization: "Bearer " + tokens.access_token}})).json();
  const refreshed = await (await fetch(discovery.token_endpoint, form({grant_type: "refresh_token",
    refresh_token: tokens.refresh_token, client_id: clientId}))).json();
  const revoked = await fetch(discovery.revocation_endpoint,
    form({token: refreshed.refresh_token, client_id: clientId}));
  window.result = {tokens, userinfo, refreshed, revoked: revoked.status};
}
document.getElementById("start").onclick = () => start();
if (location.pathname === "/callback") {
  finish().then(() => { document.title = "done"; }, (e) => { window.failure = String(e); document.title = "failed"; });
}
</script>"""

#: another origin's page, trying the token and userinfo endpoints with the app's client id
ELSEWHERE = """<!doctype html><title>elsewhere</title>
<script>
const attempts = {
  token: () => fetch(ISSUER + "/token", {method: "POST", body: new URLSearchParams({grant_type: "refresh_token",
    refresh_token: "x", client_id: CLIENT_ID})}),
  userinfo: () => fetch(ISSUER + "/userinfo", {headers: {Authorization: "Bearer x"}}),
  jwks: () => fetch(ISSUER + "/jwks"),
};
window.outcomes = {};
Promise.all(Object.entries(attempts).map(([name, attempt]) => attempt().then(
  (response) => { window.outcomes[name] = "read " + response.status; },
  (error) => { window.outcomes[name] = "refused: " + error.message; }))).then(() => { document.title = "tried"; });
</script>"""


class _Handler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class PageServer(ThreadingHTTPServer):
    """One page at every path of a loopback origin of its own."""

    body = b""

    def show(self, html: str, **values: str) -> None:
        """Serve ``html`` from now on, its upper-case names replaced by ``values`` (as JSON)."""
        for name, value in values.items():
            html = html.replace(name, json.dumps(value))
        self.body = html.encode()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def page_server() -> Iterator[PageServer]:
    server = PageServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def browser_app(signin: SignIn, origin: str) -> Client:
    return await create_client(
        signin.live.settings,
        name="Photos (browser app)",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[f"{origin}/callback"],
        allowed_cors_origins=[origin],
        public=True,
    )


async def test_a_browser_app_runs_the_whole_code_flow_with_fetch(signin: SignIn, chromium: Chromium) -> None:
    with page_server() as app:
        client = await browser_app(signin, app.origin)
        app.show(APP, ISSUER=signin.live.settings.issuer, CLIENT_ID=client.client_id)
        page = await chromium.new_page()
        await page.goto(app.origin + "/")
        await page.click("#start")
        await page.get_by_label("Username").fill(signin.username)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.click("button[type=submit]")
        await page.click("button[name=decision][value=allow]")
        await page.wait_for_function("document.title !== 'app'", timeout=20_000)
        failure = await page.evaluate("window.failure || null")
        assert await page.title() == "done", failure
        result = await page.evaluate("window.result")
        await page.close()
    assert result["tokens"]["token_type"].lower() == "bearer" and "refresh_token" in result["tokens"]
    assert result["userinfo"]["sub"] and result["userinfo"]["preferred_username"] == signin.username
    assert result["refreshed"]["refresh_token"] != result["tokens"]["refresh_token"]
    assert result["revoked"] == 200


async def test_a_page_of_another_origin_reads_nothing_but_public_documents(signin: SignIn, chromium: Chromium) -> None:
    with page_server() as app, page_server() as elsewhere:
        client = await browser_app(signin, app.origin)
        elsewhere.show(ELSEWHERE, ISSUER=signin.live.settings.issuer, CLIENT_ID=client.client_id)
        page = await chromium.new_page()
        await page.goto(elsewhere.origin + "/")
        await page.wait_for_function("document.title === 'tried'", timeout=20_000)
        outcomes = await page.evaluate("window.outcomes")
        await page.close()
    assert outcomes["token"].startswith("refused"), outcomes
    assert outcomes["userinfo"].startswith("refused"), outcomes
    assert outcomes["jwks"] == "read 200", outcomes
