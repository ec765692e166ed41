"""What a console handler is given (:class:`Visit`) and gives back (:data:`Answer`)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ... import i18n
from ...i18n import N_
from ...storage import Session, transactions
from ...storage.users import StoredUser
from ..calls import Services

T = TypeVar("T")

#: characters no stored text holds (PostgreSQL refuses NUL outright): a value with one
#: names nothing we could have, so it is refused before it reaches the database
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConsoleError(Exception):
    """Input the console cannot act on; ``str()`` is shown to the administrator."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Shown:
    """A page to show: a template of ``templates/admin`` and what it needs."""

    template: str
    context: dict[str, Any]
    status: int = 200


@dataclass(frozen=True)
class Moved:
    """The answer to a form that changed something: a 303 to ``location``."""

    location: str


Answer = Shown | Moved
Handler = Callable[["Visit"], Awaitable[Answer]]


@dataclass(frozen=True)
class Visit:
    """One request of a signed-in administrator whose second factor is fresh."""

    services: Services
    admin: StoredUser
    params: Mapping[str, str]
    query: Mapping[str, str]
    #: the CSRF-checked form of a POST (empty for a GET)
    form: Mapping[str, str] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """What the audit rows of this administrator's changes name."""
        return f"user:{self.admin.sub}"

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work`` in one transaction: committed when it returns, rolled back when it raises.
        A client it changed is forgotten by this process's client cache at once."""
        result = await transactions.run(self.services.sessionmaker, work)
        if "client_id" in self.params:
            self.services.client_cache.forget(self.params["client_id"])
        return result

    async def read(self, work: Callable[[Session], T]) -> T:
        return await transactions.run(self.services.sessionmaker, work, read_only=True)

    def param(self, name: str) -> str:
        """A path parameter (a ``sub``, a ``client_id``): one that cannot name anything is not found."""
        value = self.params.get(name, "")
        if not value or len(value) > 255 or _CONTROL.search(value):
            raise ConsoleError(N_("There is nothing at this address."), status=404)
        return value

    def arg(self, name: str, limit: int = 200) -> str:
        """A query parameter, stripped ("" when absent)."""
        return text(self.query.get(name, ""), name, limit)

    def field(self, name: str, limit: int = 200) -> str:
        """A form field, stripped ("" when absent)."""
        return text(self.form.get(name, ""), name, limit)

    def done(self, messages: Mapping[str, str]) -> str | None:
        """The message of the change just made (``?done=``), if it is one of ``messages``."""
        return messages.get(self.query.get("done", ""))


def text(value: str, name: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit:
        message = i18n.gettext("The %(name)s is too long (at most %(num)d characters).")
        raise ConsoleError(message % {"name": name.replace("_", " "), "num": limit})
    if _CONTROL.search(value):
        message = i18n.gettext("The %(name)s holds characters that cannot be used.")
        raise ConsoleError(message % {"name": name.replace("_", " ")})
    return value


def cursor(value: str) -> int | None:
    """A page's position (an id) from the query; "" is the first page."""
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ConsoleError(N_("That page does not exist: its position must be a number."))
    return int(value)


def when(moment: datetime | None) -> str:
    """A time as the pages show it (always UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"
