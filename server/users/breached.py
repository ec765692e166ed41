"""The breached-password check: Have I Been Pwned's range API (k-anonymity).

Only the first five hex characters of the password's SHA-1 leave the server; the service
answers with every suffix it knows under that prefix, and ``Add-Padding: true`` pads the
answer with zero-count entries so its size says nothing either. When the service cannot
be reached in time, the password is accepted and a warning is logged (fail open: a
third-party outage must not stop people from setting passwords). An offline deployment
points ``OSTIARY_HIBP_URL`` at a local mirror, or turns the check off.
"""

from __future__ import annotations

import hashlib
import logging

import httpx

from ..settings import Settings

log = logging.getLogger("ostiary.passwords")


class BreachedPasswords:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.hibp_url
        self.timeout = float(settings.hibp_timeout)

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    async def is_breached(self, password: str) -> bool:
        """True when the password appears in a known breach; False when not, or unknown."""
        if not self.enabled:
            return False
        prefix, suffix = _split(password)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self._url(prefix), headers=_HEADERS)
                response.raise_for_status()
        except httpx.HTTPError as error:
            return _unknown(error)
        return _listed(response.text, suffix)

    def is_breached_sync(self, password: str) -> bool:
        """The same, for the command line."""
        if not self.enabled:
            return False
        prefix, suffix = _split(password)
        try:
            response = httpx.get(self._url(prefix), headers=_HEADERS, timeout=self.timeout)
            response.raise_for_status()
        except httpx.HTTPError as error:
            return _unknown(error)
        return _listed(response.text, suffix)

    def _url(self, prefix: str) -> str:
        return f"{self.base_url}/range/{prefix}"


_HEADERS = {"Add-Padding": "true", "User-Agent": "Ostiary"}


def _split(password: str) -> tuple[str, str]:
    digest = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()
    return digest[:5], digest[5:]


def _listed(body: str, suffix: str) -> bool:
    for line in body.splitlines():
        candidate, _, count = line.strip().partition(":")
        if candidate.upper() == suffix:
            # Padding entries have a count of 0: they are not breaches.
            return count.strip().isdigit() and int(count) > 0
    return False


def _unknown(error: Exception) -> bool:
    log.warning("breached-password check unavailable (%s); password accepted", type(error).__name__)
    return False
