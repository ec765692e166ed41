"""Telling "the database is unreachable" apart from a bug."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` means the database cannot be reached right now (answer 503).

    Connection refused or lost, pool exhausted, or a statement cut off by the server going
    away. The pool pre-pings, so the next request after recovery gets a fresh connection.
    """
    if isinstance(error, sa_exc.TimeoutError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError | PermissionError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
    return False


#: Exception types that may mean "unavailable"; handlers still ask :func:`is_unavailable`.
UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError)


_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def is_retryable(error: BaseException) -> bool:
    """A transaction that lost a race and may simply be run again."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(getattr(original, "__cause__", None), "sqlstate", None)
    return state in _RETRYABLE_SQLSTATES
