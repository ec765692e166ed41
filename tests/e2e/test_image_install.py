"""The container image's install steps, run the way its build stage runs them.

There is no Docker daemon in CI, so this does what the Dockerfile's build stage does without
one: copy what the Dockerfile copies from the checkout into a fresh directory, run
``deploy/image/install`` into a fresh virtualenv (pip fetches the dependencies), then start the
installed ``ostiary serve`` from its data directory, ask it with the image's own HEALTHCHECK
command, and stop it with SIGTERM as ``docker stop`` does. One install: it takes pip's time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers import REPO_ROOT, free_port, wait_healthy
from tests.unit.test_container_files import copy_sources, dockerfile_stages, healthcheck_command

INSTALL_TIMEOUT = 600


def build_context_copy(target: Path) -> Path:
    """What the build stage's COPY lines take from the checkout, laid out under its WORKDIR."""
    builder = dockerfile_stages()[0]
    (workdir,) = builder.all("WORKDIR")
    for sources, destination in copy_sources(builder):
        into = target / Path(workdir, destination).relative_to("/")
        for source in sources:
            origin = REPO_ROOT / source
            goes_to = into / origin.name if destination.endswith("/") else into
            if origin.is_dir():
                shutil.copytree(origin, goes_to, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                goes_to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, goes_to)
    return target / Path(workdir).relative_to("/")


def clean_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OSTIARY_", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def test_the_install_script_gives_a_server_that_starts_answers_its_probe_and_stops(tmp_path: Path) -> None:
    source = build_context_copy(tmp_path / "context")
    venv = tmp_path / "opt" / "ostiary"
    installed = subprocess.run(
        ["bash", str(source / "deploy" / "image" / "install"), str(venv), str(source)],
        env=clean_environment(PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    # The package itself is installed (not a link back to a source tree), with its templates.
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import server.cli, migrations; print(server.cli.__file__, migrations.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    cli, migrations = (Path(path) for path in where.stdout.split())
    assert cli.is_relative_to(venv) and migrations.is_relative_to(venv), where.stdout
    assert list((cli.parent.parent / "web" / "templates").glob("*.html"))
    helped = subprocess.run(
        [str(venv / "bin" / "ostiary"), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr

    data = tmp_path / "data"  # the image's WORKDIR
    data.mkdir()
    (tmp_path / "keys_secret").write_text("k" * 43 + "\n")
    port = free_port()
    env = clean_environment(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        OSTIARY_HOST="127.0.0.1",
        OSTIARY_PORT=str(port),
        OSTIARY_DATABASE_URL=f"sqlite:///{data / 'ostiary.db'}",
        OSTIARY_KEYS_SECRET_FILE=str(tmp_path / "keys_secret"),
        OSTIARY_HIBP_URL="off",
        OSTIARY_MAIL_POLL_INTERVAL="1",
    )
    healthcheck = healthcheck_command(dockerfile_stages()[-1])
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["ostiary", "serve"], env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process, timeout=90)
            assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200
            probe = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=30, check=False)
            assert probe.returncode == 0, probe.stderr
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                raise
    output = log_path.read_text()
    assert returncode == 0, output
    assert "Application shutdown complete" in output, output
    # The same probe says "unhealthy" once nothing answers.
    probe = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert probe.returncode != 0
