"""Prometheus metrics: what each process counts, and the names it exposes.

Every worker updates the metrics below; ``ostiary serve`` (``observe.exposition``) adds them
up across the workers with prometheus_client's multiprocess mode and serves them on
``OSTIARY_METRICS_PORT``. The worker side costs a dictionary lookup and an add per update,
whether or not anything is exported.

Times the server knows as instants (when the signing key became active, when the oldest
unsent mail was queued) are kept as timestamps and turned into ages when scraped, so an
age is exact at every scrape, however rarely a worker refreshes the instant.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..storage import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    engine as engine_module,
    logout_notices,
    outbox,
    transactions,
)

log = logging.getLogger("ostiary.metrics")

#: methods kept as they are in the request metrics; any other is counted as "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the token endpoint answers within milliseconds; pages and argon2 within a second or so
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("ostiary_http_requests", "HTTP requests answered, by route template", ["route", "method", "status"])
LATENCY = Histogram(
    "ostiary_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS_ISSUED = Counter("ostiary_tokens_issued", "Token responses issued by /token, by grant type", ["grant_type"])
REFRESH_REUSE = Counter(
    "ostiary_refresh_reuse_detected", "Consumed refresh tokens presented again (the family is revoked)"
)
FAMILIES_REVOKED = Counter("ostiary_token_families_revoked", "Refresh-token families revoked, by reason", ["reason"])
SIGNINS_SUCCEEDED = Counter("ostiary_signins_succeeded", "Completed sign-ins")
SIGNINS_FAILED = Counter("ostiary_signins_failed", "Refused sign-in attempts, by reason", ["reason"])
LOCKOUTS = Counter("ostiary_lockouts", "Accounts locked after repeated failures, by factor", ["factor"])
SECOND_FACTOR_FAILURES = Counter("ostiary_second_factor_failures", "Wrong or refused second-factor codes")
MAIL_FAILED = Counter("ostiary_mail_deliveries_failed", "Mail deliveries that failed (each is retried)")
LOGOUT_NOTICES = Counter(
    "ostiary_backchannel_logout_notices",
    "Back-channel logout notices posted to clients, by outcome (delivered, failed, abandoned)",
    ["outcome"],
)
POOL_IN_USE = Gauge(
    "ostiary_db_pool_connections_in_use", "Database connections checked out", multiprocess_mode="livesum"
)
POOL_WAITS = Counter("ostiary_db_pool_waits", "Connection checkouts that found the pool empty and waited")
READINESS = Gauge(
    "ostiary_readiness_check_ok",
    "Each /readyz check at its last run: 1 passed, 0 failed",
    ["check"],
    multiprocess_mode="livemin",
)
OUTBOX_PENDING = Gauge("ostiary_outbox_pending", "Mail queued and not yet sent", multiprocess_mode="livemax")
LOGOUT_PENDING = Gauge(
    "ostiary_logout_notices_pending",
    "Back-channel logout notices queued and not yet delivered",
    multiprocess_mode="livemax",
)
# Instants, turned into ages at each scrape (AgesFromInstants); never exposed as they are.
LOGOUT_OLDEST = Gauge(
    "ostiary_logout_notices_oldest_pending_timestamp_seconds",
    "When the oldest undelivered back-channel logout notice was queued (0: none)",
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST = Gauge(
    "ostiary_outbox_oldest_pending_timestamp_seconds",
    "When the oldest unsent mail was queued (0: none)",
    multiprocess_mode="livemax",
)
KEY_ACTIVATED = Gauge(
    "ostiary_signing_key_activated_timestamp_seconds",
    "When the active signing key became active",
    ["alg"],
    multiprocess_mode="livemax",
)
KEY_NEXT_ROTATION = Gauge(
    "ostiary_signing_key_next_rotation_timestamp_seconds",
    "When the next scheduled rotation is due",
    ["alg"],
    multiprocess_mode="livemax",
)

#: instant gauge -> (the age gauge exposed in its place, its help, sign: +1 age, -1 time left)
_AGES: dict[str, tuple[str, str, int]] = {
    "ostiary_outbox_oldest_pending_timestamp_seconds": (
        "ostiary_outbox_oldest_pending_age_seconds",
        "Seconds since the oldest unsent mail was queued (0: nothing pending)",
        1,
    ),
    "ostiary_logout_notices_oldest_pending_timestamp_seconds": (
        "ostiary_logout_notices_oldest_pending_age_seconds",
        "Seconds since the oldest undelivered back-channel logout notice was queued (0: nothing pending)",
        1,
    ),
    "ostiary_signing_key_activated_timestamp_seconds": (
        "ostiary_signing_key_age_seconds",
        "Seconds since the active signing key became active",
        1,
    ),
    "ostiary_signing_key_next_rotation_timestamp_seconds": (
        "ostiary_signing_key_next_rotation_seconds",
        "Seconds until the scheduled rotation (negative: overdue; absent: no schedule)",
        -1,
    ),
}
_BUILD_INFO = "ostiary_build_info"
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_WORKER_METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    REQUESTS,
    LATENCY,
    TOKENS_ISSUED,
    REFRESH_REUSE,
    FAMILIES_REVOKED,
    SIGNINS_SUCCEEDED,
    SIGNINS_FAILED,
    LOCKOUTS,
    SECOND_FACTOR_FAILURES,
    MAIL_FAILED,
    LOGOUT_NOTICES,
    POOL_IN_USE,
    POOL_WAITS,
    READINESS,
    OUTBOX_PENDING,
    OUTBOX_OLDEST,
    LOGOUT_PENDING,
    LOGOUT_OLDEST,
    KEY_ACTIVATED,
    KEY_NEXT_ROTATION,
)


#: each (route, method, status)'s counter and histogram, found once: ``labels()`` takes a
#: lock and formats its key at every call, which the per-request path can skip
_REQUEST_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    series = _REQUEST_SERIES.get((route, method, status))
    if series is None:
        label = method if method in _METHODS else "other"
        series = (REQUESTS.labels(route, label, str(status)), LATENCY.labels(route, label))
        if label != "other":  # a method the client chose is not kept as a key either
            _REQUEST_SERIES[(route, method, status)] = series
    series[0].inc()
    series[1].observe(seconds)


def observe_signing_key(alg: str, activated_at: datetime | None, next_rotation_at: datetime | None) -> None:
    if activated_at is not None:
        KEY_ACTIVATED.labels(alg).set(activated_at.timestamp())
    # With no schedule there is nothing to set, and the series stays absent: rotation is a
    # setting of the whole deployment, so no process of it ever set one.
    if next_rotation_at is not None:
        KEY_NEXT_ROTATION.labels(alg).set(next_rotation_at.timestamp())


def observe_readiness(results: Iterable[tuple[str, bool]]) -> None:
    for check, ok in results:
        READINESS.labels(check).set(1 if ok else 0)


def family_revoked(reason: str, count: int = 1) -> None:
    if count > 0:
        FAMILIES_REVOKED.labels(reason).inc(count)


def observe_pool(engine: AsyncEngine) -> None:
    engine_module.observe_pool(engine, in_use=POOL_IN_USE.set, waited=POOL_WAITS.inc)


async def refresh_outbox(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """The mail outbox's and the logout notices' backlogs. Nothing pending: an age of 0."""
    for backlog, pending_gauge, oldest_gauge in (
        (outbox.backlog, OUTBOX_PENDING, OUTBOX_OLDEST),
        (logout_notices.backlog, LOGOUT_PENDING, LOGOUT_OLDEST),
    ):
        pending, oldest = await transactions.run(sessionmaker, backlog, read_only=True)
        pending_gauge.set(pending)
        oldest_gauge.set(oldest.timestamp() if oldest is not None else 0)


async def refresh_periodically(sessionmaker: async_sessionmaker[AsyncSession], interval: float = 15) -> None:
    """The gauges read from the database, refreshed every ``interval`` seconds."""
    while True:
        try:
            await refresh_outbox(sessionmaker)
        except Exception as error:  # the database may be down: the gauges keep their last values
            log.warning("metrics: could not read the outbox backlog: %s", type(error).__name__)
        await asyncio.sleep(interval)


class AgesFromInstants(Collector):
    """What is scraped: the workers' metrics (``source``), with each instant gauge replaced
    by the age (or time left) it stands for at this moment, and the build info."""

    def __init__(self, source: Collector, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield build_info()
        for family in self.source.collect():
            if family.name not in _AGES:
                yield family
                continue
            name, documentation, sign = _AGES[family.name]
            labels = _metric_labels(family)
            ages = GaugeMetricFamily(name, documentation, labels=labels)
            for sample in family.samples:
                value = 0.0 if sample.value == 0 else sign * (now - sample.value)
                ages.add_metric([sample.labels[label] for label in labels], value)
            yield ages


def build_info() -> GaugeMetricFamily:
    info = GaugeMetricFamily(_BUILD_INFO, "Ostiary's version and Python's", labels=["version", "python"])
    info.add_metric([_version(), platform.python_version()], 1)
    return info


@functools.cache
def _version() -> str:
    """The installed version, read once (a scrape need not read the package metadata)."""
    try:
        return importlib.metadata.version("ostiary")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


def exposed_names() -> frozenset[str]:
    """Every sample name /metrics can show (for the alert rules and dashboards to be checked
    against)."""
    return frozenset(label_names())


def label_names() -> dict[str, tuple[str, ...]]:
    """Each exposed sample name and its labels (``le`` on histogram buckets)."""
    result: dict[str, tuple[str, ...]] = {_BUILD_INFO: ("version", "python")}
    for metric in _WORKER_METRICS:
        for name, labels in _samples_of(metric):
            result[name] = labels
    return result


def _samples_of(metric: Counter | Gauge | Histogram) -> Iterator[tuple[str, tuple[str, ...]]]:
    labels = tuple(metric._labelnames)
    base = metric._name
    if isinstance(metric, Counter):
        yield base + "_total", labels
    elif isinstance(metric, Histogram):
        for suffix in _HISTOGRAM_SUFFIXES:
            yield base + suffix, (*labels, "le") if suffix == "_bucket" else labels
    elif base in _AGES:
        yield _AGES[base][0], labels
    else:
        yield base, labels


def _metric_labels(family: Metric) -> list[str]:
    seen: list[str] = []
    for sample in family.samples:
        for label in sample.labels:
            if label not in seen and label != "pid":
                seen.append(label)
    return seen
