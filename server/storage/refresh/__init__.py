"""Refresh tokens in families (RFC 9700 §4.14.2): what a token is (:mod:`.state`), how one
rotates (:mod:`.rotation`, one call, one implementation per dialect), and why one did not
(:mod:`.failures`)."""

from .failures import SUPERSEDED, Diagnosis, Failure, diagnose, use_grace
from .rotation import rotate
from .state import TOKEN_COLUMNS, FamilyToken, TokenState, insert_first, lookup

__all__ = [
    "SUPERSEDED",
    "TOKEN_COLUMNS",
    "Diagnosis",
    "Failure",
    "FamilyToken",
    "TokenState",
    "diagnose",
    "insert_first",
    "lookup",
    "rotate",
    "use_grace",
]
