"""Where a session's address is, roughly: "City, Country" or "Country", looked up in a
MaxMind GeoLite2 or GeoIP2 database file (``OSTIARY_GEOIP_DATABASE``) on this machine.

Off unless that setting names a file: nothing is ever sent anywhere to place an address.
The file is opened once per process and read through ``maxminddb`` (MaxMind's reader; a
memory-mapped file, so a lookup is a few microseconds and does not block the event loop).
Names are the English ones the database holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import maxminddb


class Places:
    def __init__(self, path: Path) -> None:
        self.reader = maxminddb.open_database(str(path))

    def place(self, address: str | None) -> str | None:
        """``address``'s city and country, or country, as the database knows it; None for
        no address, an address it does not hold (a private one) or one that is not an IP."""
        if not address:
            return None
        try:
            record = self.reader.get(address)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        country = _name(record.get("country")) or _name(record.get("registered_country"))
        city = _name(record.get("city"))
        if country is None:
            return city
        return f"{city}, {country}" if city else country

    def close(self) -> None:
        self.reader.close()


def _name(part: Any) -> str | None:
    if not isinstance(part, dict):
        return None
    names = part.get("names")
    name = names.get("en") if isinstance(names, dict) else None
    return name if isinstance(name, str) and name else None
