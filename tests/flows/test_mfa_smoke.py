from __future__ import annotations

import jwt
import pytest

from tests.flows.conftest import SignIn
from tests.mfa import enrol
from tests.oidc import Flow, query_of

pytestmark = pytest.mark.anyio


async def test_enrol_then_sign_in_with_both_factors(signin: SignIn) -> None:
    enrolled = await enrol(signin.browser, "alice")
    signin.http.cookies.clear()
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params())
    page = await signin.browser.sign_in(page, "alice")
    assert page.status_code == 200 and 'action="/login/otp"' in page.text, page.text
    page = await signin.browser.submit(page, {"code": await enrolled.app.code()})
    if 'name="decision"' in page.text:
        page = await signin.browser.submit(page, decision="allow")
    assert page.status_code == 303, page.text
    code = query_of(page.headers["location"])["code"]
    response = await signin.http.post(
        "/token", data=flow.token_form(code), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    claims = jwt.decode(response.json()["id_token"], options={"verify_signature": False})
    assert claims["acr"] == "urn:ostiary:acr:mfa"
    assert claims["amr"] == ["pwd", "otp", "mfa"]
