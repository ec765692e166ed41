"""The pieces of ``server/observe`` that need no server: settings, request ids, the log
format, and what the metrics exposition turns instants into."""

from __future__ import annotations

import io
import logging

import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.registry import Collector

from server.observe import context, metrics
from server.observe.logs import chosen_format, handler
from server.settings import Settings, SettingsError


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_format_and_metrics_port_are_checked_by_name() -> None:
    assert Settings.from_env({}).log_format == "auto"
    assert Settings.from_env({}).metrics_port == 0
    assert Settings.from_env({"OSTIARY_METRICS_PORT": "off"}).metrics_port == 0
    assert Settings.from_env({"OSTIARY_METRICS_PORT": "9464"}).metrics_port == 9464
    with pytest.raises(SettingsError) as bad:
        Settings.from_env({"OSTIARY_LOG_FORMAT": "yaml", "OSTIARY_METRICS_PORT": "99999"})
    assert {name for name, _ in bad.value.problems} == {"OSTIARY_LOG_FORMAT", "OSTIARY_METRICS_PORT"}
    with pytest.raises(SettingsError) as same:
        Settings.from_env({"OSTIARY_METRICS_PORT": "8000", "OSTIARY_PORT": "8000"})
    ((name, message),) = same.value.problems
    assert name == "OSTIARY_METRICS_PORT" and "OSTIARY_PORT" in message


def test_auto_is_text_for_a_person_and_json_for_a_collector() -> None:
    auto = Settings.from_env({})
    assert chosen_format(auto, Terminal()) == "text"
    assert chosen_format(auto, io.StringIO()) == "json"
    assert chosen_format(Settings.from_env({"OSTIARY_LOG_FORMAT": "json"}), Terminal()) == "json"
    assert chosen_format(Settings.from_env({"OSTIARY_LOG_FORMAT": "text"}), io.StringIO()) == "text"


def test_a_json_line_holds_the_request_and_no_raw_control_character() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("ostiary.test.json")
    logger.addHandler(handler(stream, "json"))
    logger.propagate = False
    try:
        _, token = context.begin("req-1")
        context.note_client("client-1")
        context.note_user("sub-1")
        logger.warning("path /a\nforged line \x1b[2J \u2028")
        context.end(token)
        logger.warning("outside any request")
    finally:
        logger.handlers.clear()
    first, second = stream.getvalue().splitlines()
    assert first.isascii() and "\x1b" not in first
    import json

    record = json.loads(first)
    assert list(record)[:4] == ["time", "level", "logger", "event"]
    assert record["event"] == "path /a\nforged line \x1b[2J \u2028"
    assert (record["request_id"], record["client_id"], record["user_id"]) == ("req-1", "client-1", "sub-1")
    assert "request_id" not in json.loads(second)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"3f2a9c-77", "3f2a9c-77"),
        (b"Root=1-67891233-abcdef012345678912345678", "Root=1-67891233-abcdef012345678912345678"),
        (b"", None),
        (b"has space", None),
        (b"line\nbreak", None),
        (b'"quoted"', None),
        (b"x" * 129, None),
        ("é".encode(), None),
    ],
)
def test_only_a_plain_token_is_kept_as_a_forwarded_request_id(sent: bytes, kept: str | None) -> None:
    assert context.accepted_request_id(sent) == kept


class Fixed(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):  # type: ignore[no-untyped-def]
        return self.registry.collect()


def test_instants_are_scraped_as_ages_and_time_left() -> None:
    registry = CollectorRegistry()
    activated = Gauge("ostiary_signing_key_activated_timestamp_seconds", "", ["alg"], registry=registry)
    rotation = Gauge("ostiary_signing_key_next_rotation_timestamp_seconds", "", ["alg"], registry=registry)
    oldest = Gauge("ostiary_outbox_oldest_pending_timestamp_seconds", "", registry=registry)
    pending = Gauge("ostiary_outbox_pending", "", registry=registry)
    activated.labels("RS256").set(1_000)
    rotation.labels("RS256").set(1_500)
    rotation.labels("ES256").set(900)  # overdue
    oldest.set(0)  # nothing pending
    pending.set(3)
    scraped = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in metrics.AgesFromInstants(Fixed(registry), clock=lambda: 1_200.0).collect()
        for sample in family.samples
    }
    assert scraped[("ostiary_signing_key_age_seconds", (("alg", "RS256"),))] == 200
    assert scraped[("ostiary_signing_key_next_rotation_seconds", (("alg", "RS256"),))] == 300
    assert scraped[("ostiary_signing_key_next_rotation_seconds", (("alg", "ES256"),))] == -300
    assert scraped[("ostiary_outbox_oldest_pending_age_seconds", ())] == 0
    assert scraped[("ostiary_outbox_pending", ())] == 3
    assert not any(name.endswith("timestamp_seconds") for name, _ in scraped)
    ((build, labels),) = [key for key in scraped if key[0] == "ostiary_build_info"]
    assert dict(labels).keys() == {"version", "python"}


def test_the_exposed_names_are_what_a_scrape_can_show() -> None:
    names = metrics.exposed_names()
    assert {
        "ostiary_http_requests_total",
        "ostiary_http_request_duration_seconds_bucket",
        "ostiary_signing_key_age_seconds",
        "ostiary_outbox_oldest_pending_age_seconds",
        "ostiary_build_info",
    } <= names
    assert not any("timestamp" in name for name in names)
    labels = metrics.label_names()
    assert labels.keys() == names
    assert labels["ostiary_http_request_duration_seconds_bucket"] == ("route", "method", "le")
    assert labels["ostiary_http_requests_total"] == ("route", "method", "status")
