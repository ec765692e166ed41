"""The token endpoint's random values (refresh tokens, ``jti``): OpenSSL's CSPRNG, shaped
as ``secrets.token_urlsafe`` shapes them.

Why not ``secrets`` (it lets go of the GIL) is a matter of speed, measured by ``bench/``,
not tested here; these tests hold the values to what ``secrets`` would give."""

from __future__ import annotations

import base64
import os
import re
import secrets

import pytest

from server.oauth.tokens import new_refresh_token, random_token

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@pytest.mark.parametrize("nbytes", [16, 32])
def test_same_shape_as_secrets(nbytes: int) -> None:
    token = random_token(nbytes)
    assert len(token) == len(secrets.token_urlsafe(nbytes))
    assert _BASE64URL.fullmatch(token)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == nbytes


def test_refresh_tokens_carry_256_bits() -> None:
    token = new_refresh_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32


def test_no_repeats() -> None:
    drawn = {random_token(16) for _ in range(10_000)}
    assert len(drawn) == 10_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # 3.12+: other threads alive
def test_a_forked_child_draws_other_values_than_its_parent() -> None:
    """A DRBG state copied by fork and not reseeded would hand the child the parent's next
    values; OpenSSL reseeds in the child."""
    random_token(16)  # the parent's generator is initialised before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draws, then out, whatever happens (never back into pytest)
        code = 1
        try:
            os.close(read)
            os.write(write, " ".join(random_token(16) for _ in range(8)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    parent = {random_token(16) for _ in range(8)}
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(child) == 8
    assert not parent & child
