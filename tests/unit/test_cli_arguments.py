"""The ``ostiary`` command line as argparse reads it."""

from __future__ import annotations

import pytest

from server.cli import parse_args

#: a key id as `ostiary keys list` prints it: a base64url thumbprint, here one beginning with "-"
_DASHED_KID = "-6zNrbVusgV279ROHicNhoOKm0X7ZtvNuIYh0OMmk3g"


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "revoke", _DASHED_KID],
        ["keys", "revoke", "--", _DASHED_KID],
        ["keys", "revoke", "--json", _DASHED_KID],
        ["keys", "revoke", _DASHED_KID, "--json"],
    ],
)
def test_a_key_id_beginning_with_a_dash_is_a_key_id(argv: list[str]) -> None:
    parsed = parse_args(argv)
    assert parsed.kid == _DASHED_KID
    assert parsed.json is ("--json" in argv)


def test_an_ordinary_key_id() -> None:
    assert parse_args(["keys", "revoke", "AbC_123"]).kid == "AbC_123"


def test_help_is_still_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["keys", "revoke", "--help"])
    assert exited.value.code == 0
    assert "usage: ostiary keys revoke" in capsys.readouterr().out
