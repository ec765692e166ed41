"""Each request's id (``X-Request-ID``) and its count by route template."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.helpers import TestDatabase, app_in_process, make_settings

pytestmark = pytest.mark.anyio

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


def requests(route: str, method: str, status: int) -> float:
    labels = {"route": route, "method": method, "status": str(status)}
    return REGISTRY.get_sample_value("ostiary_http_requests_total", labels) or 0.0


async def test_a_request_id_is_the_trusted_proxys_or_a_new_one(database: TestDatabase, tmp_path: Path) -> None:
    # the in-process client's address is 127.0.0.1: a trusted proxy here
    async with app_in_process(make_settings(database, tmp_path, trusted_proxies=LOOPBACK)) as (http, _):
        kept = await http.get("/livez", headers={"X-Request-ID": "edge-42"})
        assert kept.headers["x-request-id"] == "edge-42"
        unfit = await http.get("/livez", headers={"X-Request-ID": "two words"})
        assert unfit.headers["x-request-id"] != "two words" and len(unfit.headers["x-request-id"]) == 32
        refused = await http.post("/token", content=b"x" * 100, headers={"Content-Length": str(10**9)})
        assert refused.status_code == 413 and len(refused.headers["x-request-id"]) == 32


async def test_a_request_id_from_an_untrusted_peer_is_replaced(database: TestDatabase, tmp_path: Path) -> None:
    async with app_in_process(make_settings(database, tmp_path)) as (http, _):
        first = await http.get("/livez", headers={"X-Request-ID": "edge-42"})
        second = await http.get("/livez", headers={"X-Request-ID": "edge-42"})
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert "edge-42" not in ids and len(ids) == 2


async def test_requests_are_counted_by_route_template_never_by_the_path_sent(
    database: TestDatabase, tmp_path: Path
) -> None:
    before = {key: requests(*key) for key in [("unmatched", "GET", 404), ("/jwks", "GET", 200), ("/token", "GET", 405)]}
    other = (
        REGISTRY.get_sample_value(
            "ostiary_http_requests_total", {"route": "unmatched", "method": "other", "status": "404"}
        )
        or 0.0
    )
    async with app_in_process(make_settings(database, tmp_path)) as (http, _):
        for index in range(3):
            assert (await http.get(f"/no-such-page-{index}")).status_code == 404
        assert (await http.get("/jwks")).status_code == 200
        assert (await http.get("/token")).status_code == 405
        assert (await http.request("BREW", "/no-such-pot")).status_code == 404
    assert requests("unmatched", "GET", 404) - before[("unmatched", "GET", 404)] == 3
    assert requests("/jwks", "GET", 200) - before[("/jwks", "GET", 200)] == 1
    assert requests("/token", "GET", 405) - before[("/token", "GET", 405)] == 1
    after_other = REGISTRY.get_sample_value(
        "ostiary_http_requests_total", {"route": "unmatched", "method": "other", "status": "404"}
    )
    assert after_other == other + 1
    paths = {
        sample.labels["route"] for family in REGISTRY.collect() for sample in family.samples if "route" in sample.labels
    }
    assert not any(path.startswith("/no-such") for path in paths)
