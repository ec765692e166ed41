# syntax=docker/dockerfile:1
# Ostiary's container image.
#
#   docker build -t ostiary .
#   docker run -p 8000:8000 -v ostiary-data:/var/lib/ostiary ostiary
#
# The schema is migrated by `ostiary db upgrade`, run as its own step (a one-shot container,
# a Kubernetes Job) before the new servers start: `docker run --rm ... ostiary db upgrade`.
# `ostiary serve` creates the schema only on an empty database, never upgrades one.
#
# Secrets come from files, never from the image or build arguments: mount them and name them
# with the *_FILE settings (OSTIARY_KEYS_SECRET_FILE, OSTIARY_ADMIN_PASSWORD_FILE,
# OSTIARY_SMTP_PASSWORD_FILE). Without OSTIARY_KEYS_SECRET(_FILE) and OSTIARY_DATABASE_URL the
# container runs the embedded mode: SQLite and a generated secret in /var/lib/ostiary, so keep
# that directory on a volume.

# Build stage: the same base as the runtime, so the virtualenv's interpreter path is the same.
# Every dependency installs from a wheel: no compiler here either.
FROM python:3.12-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY server ./server
COPY deploy/image/install ./deploy/image/install
# Optional extras, e.g. `docker build --build-arg EXTRAS=otel`.
ARG EXTRAS=""
RUN EXTRAS="$EXTRAS" deploy/image/install /opt/ostiary /src

# Runtime: the base image and the virtualenv, nothing else.
FROM python:3.12-slim
RUN groupadd --system --gid 10001 ostiary \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ostiary --no-create-home \
        --shell /usr/sbin/nologin ostiary \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/ostiary
COPY --from=builder /opt/ostiary /opt/ostiary
ENV PATH=/opt/ostiary/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OSTIARY_HOST=0.0.0.0 \
    OSTIARY_PORT=8000 \
    OSTIARY_METRICS_PORT=9464
# The embedded mode's SQLite file and keys/ land here (relative defaults): the one writable place.
WORKDIR /var/lib/ostiary
USER 10001:10001
# 8000: OpenID Connect and OAuth. 9464: Prometheus metrics at /metrics; publish it only to the scraper.
EXPOSE 8000 9464
# /livez never touches the database: a database outage must not get every container restarted.
# Slim images have no curl; Python's urllib raises (exit 1) on anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OSTIARY_PORT', '8000') + '/livez', timeout=4)"]
# SIGTERM (docker stop) lets requests in flight finish for OSTIARY_SHUTDOWN_GRACE_SECONDS (20 s);
# give `docker stop -t` / terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ostiary"]
CMD ["serve"]
