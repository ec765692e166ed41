"""How the account page names a session's browser (from its User-Agent, by uap-core's
rules), and where it places it (a local MaxMind database, only when one is configured)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from server.authn.browsers import UNKNOWN, describe
from server.authn.places import Places
from server.settings import Settings, SettingsError

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    ("user_agent", "shown"),
    [
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Windows"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Chrome 131 on Linux",
        ),
        (IPHONE, "Mobile Safari 17 on iOS"),
        ("curl/8.5.0", "curl 8"),  # a program without a system in its User-Agent
        ("Something/1 (a thing no rule knows)", UNKNOWN),
        ("", UNKNOWN),
        (None, UNKNOWN),
    ],
)
def test_a_user_agent_reads_as_browser_version_and_system(user_agent: str | None, shown: str) -> None:
    assert describe(user_agent) == shown


def test_unknown_browser_on_a_known_system_says_so() -> None:
    assert describe("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Nobody/3") == "Unknown browser on Windows"


def _database(path: Path, kind: str = "GeoLite2-City") -> Path:
    writer = MMDBWriter(ip_version=6, database_type=kind, languages=["en"], ipv4_compatible=True)
    writer.insert_network(
        IPSet(["192.0.2.0/24"]), {"city": {"names": {"en": "Testville"}}, "country": {"names": {"en": "Testland"}}}
    )
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"names": {"en": "Testland"}}})
    writer.to_db_file(str(path))
    return path


def test_a_place_is_city_and_country_or_country_or_nothing(tmp_path: Path) -> None:
    places = Places(_database(tmp_path / "city.mmdb"))
    try:
        assert places.place("192.0.2.7") == "Testville, Testland"
        assert places.place("198.51.100.7") == "Testland"
        assert places.place("203.0.113.7") is None  # not in the database
        assert places.place("not an address") is None
        assert places.place(None) is None
    finally:
        places.close()


def test_the_geoip_setting_must_name_a_city_or_country_database(tmp_path: Path) -> None:
    good = _database(tmp_path / "city.mmdb")
    assert Settings.from_env({"OSTIARY_GEOIP_DATABASE": str(good)}).geoip_database == good
    assert Settings.from_env({"OSTIARY_GEOIP_DATABASE": ""}).geoip_database is None
    (tmp_path / "junk.mmdb").write_bytes(b"not a database")
    asn = _database(tmp_path / "asn.mmdb", kind="GeoLite2-ASN")
    for path, says in (
        (tmp_path / "missing.mmdb", "cannot read"),
        (tmp_path / "junk.mmdb", "is not a MaxMind database"),
        (asn, "must be a City or Country database"),
    ):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"OSTIARY_GEOIP_DATABASE": str(path)})
        ((name, message),) = caught.value.problems
        assert name == "OSTIARY_GEOIP_DATABASE" and says in message, message
