"""What an admin API resource is given (:class:`Call`) and gives back (:class:`Reply`),
with the rules every resource shares: request bodies checked field by field, cursor
paging, and versions (ETags) for ``If-Match``.

Resources never see HTTP: ``web/admin_api.py`` builds the call from the request and turns
the reply, or the :class:`~server.admin.errors.Problem` raised, into the response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..authn.lockout import Lockout
from ..clients.cache import ClientCache
from ..keys.holder import KeyRingHolder
from ..keys.wrapping import KeyWrappers
from ..settings import Settings
from ..storage import AsyncSession, Session, async_sessionmaker, transactions
from ..users.breached import BreachedPasswords
from ..users.passwords import Passwords
from .errors import Invalid, PreconditionFailed
from .principal import Principal

T = TypeVar("T")

#: the most items one page holds, and how many when ``limit`` is not given
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class Services:
    """What resources need of the running server."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    keys: KeyRingHolder
    wrappers: KeyWrappers
    passwords: Passwords
    breached: BreachedPasswords
    lockout: Lockout
    #: this process's client snapshots, forgotten when the API changes a client
    client_cache: ClientCache


@dataclass(frozen=True)
class Page:
    #: the cursor's position: items after it (or before it, for newest-first lists)
    position: int | None
    limit: int


@dataclass
class Call:
    services: Services
    principal: Principal
    params: Mapping[str, str]
    query: Mapping[str, str]
    #: the JSON object of the body (POST, PATCH), or None without one
    document: dict[str, Any] | None = None
    if_match: str | None = None

    @property
    def actor(self) -> str:
        return self.principal.actor

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work`` in one transaction: committed when it returns, rolled back when it raises,
        so a refused change leaves nothing behind."""
        return await transactions.run(self.services.sessionmaker, work)

    async def read(self, work: Callable[[Session], T]) -> T:
        return await transactions.run(self.services.sessionmaker, work, read_only=True)

    def body(self, spec: Mapping[str, str], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The body's fields, each of the kind ``spec`` names (see :func:`check_fields`)."""
        return check_fields(self.document or {}, spec, required=required)

    def page(self) -> Page:
        """``limit`` (1 to 200, default 50) and ``cursor`` (from the previous page's
        ``next_cursor``) of the query."""
        errors: list[tuple[str, str]] = []
        raw_limit = self.query.get("limit")
        limit = DEFAULT_LIMIT
        if raw_limit is not None:
            if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_LIMIT:
                errors.append(("limit", f"must be a number from 1 to {MAX_LIMIT}"))
            else:
                limit = int(raw_limit)
        position = None
        raw_cursor = self.query.get("cursor")
        if raw_cursor is not None:
            position = decode_cursor(raw_cursor)
            if position is None:
                errors.append(("cursor", "is not a cursor this API gave out"))
        if errors:
            raise Invalid(errors)
        return Page(position, limit)

    def check_version(self, current: Callable[[], Mapping[str, Any]]) -> None:
        """Refuse the change (412) when ``If-Match`` names another version than that of
        ``current()``, the resource as it is now, read in the transaction that changes it
        (and only read when ``If-Match`` asks for a comparison)."""
        if self.if_match is None:
            return
        wanted = [tag.strip() for tag in self.if_match.split(",")]
        if "*" not in wanted and version_of(current()) not in wanted:
            raise PreconditionFailed("the resource changed since it was read: read it again (If-Match)")


@dataclass
class Reply:
    body: Any = None
    status: int = 200
    #: the representation's version, sent as ``ETag``
    etag: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resource(cls, document: Mapping[str, Any], status: int = 200) -> Reply:
        return cls(dict(document), status, version_of(document))

    @classmethod
    def listing(cls, items: list[dict[str, Any]], page: Page, last: int | None) -> Reply:
        """One page: ``next_cursor`` is set when the page is full (there may be more)."""
        more = len(items) >= page.limit and last is not None
        return cls({"items": items, "next_cursor": encode_cursor(last) if more and last is not None else None})


Resource = Callable[[Call], Awaitable[Reply]]


def version_of(document: Mapping[str, Any]) -> str:
    """A strong ETag of the representation: equal documents, equal tags, in every process."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return '"' + hashlib.sha256(canonical).hexdigest()[:32] + '"'


#: the largest id a listed row can have
MAX_POSITION = 2**31 - 1


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    digits = text[1:]
    if not (text.startswith("p") and digits.isascii() and digits.isdigit() and len(digits) < 19):
        return None
    position = int(digits)
    # every id the lists page by is a 32-bit integer column: no cursor of ours goes beyond
    # (PostgreSQL would refuse the comparison outright)
    return position if position <= MAX_POSITION else None


#: the kinds of field :func:`check_fields` knows
def _text(value: Any) -> bool:
    """A JSON string that is text: JSON allows lone surrogates, which no database, page or
    password hash can take."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_KINDS: dict[str, Callable[[Any], bool]] = {
    "string": _text,
    "string?": lambda v: v is None or _text(v),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53,
    "strings": lambda v: isinstance(v, list) and all(_text(item) for item in v),
    "object?": lambda v: v is None or isinstance(v, dict),
}
_KIND_NAMES = {
    "string": "a string of text",
    "string?": "a string of text, or null",
    "boolean": "true or false",
    "integer": "an integer",
    "strings": "an array of strings of text",
    "object?": "a JSON object, or null",
}


def check_fields(
    document: Mapping[str, Any], spec: Mapping[str, str], *, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``document`` if every field is one of ``spec``'s, of its kind, and the ``required``
    ones are present; otherwise :class:`Invalid` listing every field at fault at once."""
    errors: list[tuple[str, str]] = []
    for name, value in document.items():
        kind = spec.get(name)
        if kind is None:
            errors.append((name, "is not a field of this resource"))
        elif not _KINDS[kind](value):
            errors.append((name, f"must be {_KIND_NAMES[kind]}"))
    errors.extend((name, "is required") for name in required if name not in document)
    if errors:
        raise Invalid(errors)
    return dict(document)
