"""Session ids (``sid``): what ID tokens and logout tokens carry, and what ``ostiary sessions
end --sid`` takes on its command line."""

from __future__ import annotations

import re

from server.authn.secrets import new_sid
from server.cli import parse_args


def test_a_sid_is_32_url_safe_characters_never_starting_with_a_dash() -> None:
    sids = [new_sid() for _ in range(5000)]  # one in 64 random ones would start with "-"
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{31}", sid) for sid in sids)
    assert len(set(sids)) == len(sids)


def test_every_sid_is_taken_by_the_command_line() -> None:
    for _ in range(50):
        sid = new_sid()
        args = parse_args(["sessions", "end", "alice", "--sid", sid])
        assert args.sid == sid
