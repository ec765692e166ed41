"""``OstiaryRequest`` stands in for Authlib's ``OAuth2Request`` without calling its ``__init__``."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import OAuth2Request

from server.oauth.request import OstiaryRequest


def test_it_has_every_attribute_authlib_sets() -> None:
    # A newer Authlib that sets another attribute in OAuth2Request.__init__ fails here, not
    # deep inside a grant that reads it.
    authlib = OAuth2Request("POST", "https://id.example.com/token", headers={})
    ours = OstiaryRequest("POST", "https://id.example.com/token", {}, [("grant_type", "client_credentials")])
    missing = set(vars(authlib)) - set(vars(ours))
    assert not missing
    for name, value in vars(authlib).items():
        if name != "headers" and name != "payload":
            assert getattr(ours, name) == value, name


def test_the_form_and_the_query_reach_authlib() -> None:
    post = OstiaryRequest("POST", "https://id.example.com/token", {"Authorization": "x"}, [("scope", "a b")])
    assert post.payload.scope == "a b" and post.form == {"scope": "a b"} and post.headers["Authorization"] == "x"
    get = OstiaryRequest("GET", "https://id.example.com/authorize", {}, [], query=[("state", "s")])
    assert get.payload.state == "s" and get.args == {"state": "s"}
