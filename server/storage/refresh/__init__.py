"""Refresh tokens in families (RFC 9700 §4.14.2): what a token is (:mod:`.state`), how one
rotates, or is used without rotating (:mod:`.rotation`: ``rotate`` and ``use``, one
implementation per dialect each), and why one could not be (:mod:`.failures`)."""

from .failures import SUPERSEDED, Diagnosis, Failure, diagnose, use_grace
from .rotation import rotate, use
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
    "use",
    "use_grace",
]
