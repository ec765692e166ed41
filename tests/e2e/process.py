"""Running ``ostiary`` as its own process, for end-to-end tests."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from server.settings import Settings
from tests.helpers import ostiary_command, ostiary_env, run_ostiary, wait_healthy
from tests.oidc import PASSWORD, Flow, forms_of, query_of


def start_serving(settings: Settings, tmp_path: Path, log: IO[str], *args: str, **env: str) -> subprocess.Popen[str]:
    """``ostiary serve`` started in ``tmp_path``, its output to ``log``."""
    return subprocess.Popen(
        [*ostiary_command(), "serve", *args],
        env=ostiary_env(settings, **env),
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def serving(settings: Settings, tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[str, list[str]]]:
    """Run ``ostiary serve``; yields its base URL and, after stopping, holds its log lines."""
    log_path = tmp_path / "serve.log"
    lines: list[str] = []
    with log_path.open("w") as log:
        process = start_serving(settings, tmp_path, log, *args, **env)
        try:
            wait_healthy(f"http://127.0.0.1:{settings.port}", process)
            yield f"http://127.0.0.1:{settings.port}", lines
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=30)
            lines.extend(log_path.read_text().splitlines())
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert returncode in (0, -signal.SIGTERM), "\n".join(lines)
    assert any("Application shutdown complete" in line for line in lines), "\n".join(lines)


# What ``ostiary`` is (pyproject.toml: ``server.cli:main``), for each command line read from
# stdin (a JSON line: its arguments and its standard input): its exit status and what it wrote
# to stdout and stderr, as a JSON line. An exception out of main ends the process, traceback
# on stderr, as it would end ``ostiary``.
_COMMANDS = """
import contextlib, io, json, sys
from server.cli import main
commands, replies = sys.stdin, sys.stdout
for line in commands:
    argv, stdin = json.loads(line)
    out, err = io.StringIO(), io.StringIO()
    sys.stdin = io.StringIO(stdin)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit:  # how argparse refuses a command line
            status = exit.code
    replies.write(json.dumps([status, out.getvalue(), err.getvalue()]) + "\\n")
    replies.flush()
"""


class Commands:
    """``ostiary`` command lines run one after another by one process, which calls the
    command's entry point for each: a start of ``ostiary`` costs a second or two of imports,
    paid once here. Same environment and working directory as :func:`run_ostiary` gives.
    Not for ``serve`` or ``db``: they set up logging, which would outlive their run."""

    def __init__(self, env: dict[str, str], cwd: Path, timeout: float = 120) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            [sys.executable, "-c", _COMMANDS],
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([list(args), stdin]) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=30)
            raise AssertionError(f"ostiary {' '.join(args)} gave no answer:\n{stderr}")
        status, out, err = json.loads(line)
        return subprocess.CompletedProcess(list(args), status, out, err)

    def close(self) -> None:
        """Ends the process, which must have met no error outside the commands' own."""
        _, stderr = self.process.communicate(timeout=30)
        assert self.process.returncode == 0 and "Traceback" not in stderr, stderr


def create_client_with_cli(settings: Settings, tmp_path: Path, *options: str) -> dict[str, str]:
    """``ostiary clients create --json``; without options, a client_credentials client."""
    default = ("--scope", "reports:read", "--audience", "https://reports.example.com")
    result = run_ostiary(
        ["clients", "create", "--name", "reports", *(options or default), "--json"],
        ostiary_env(settings),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    created: dict[str, str] = json.loads(result.stdout)
    return created


def create_user_with_cli(settings: Settings, tmp_path: Path, username: str, **env: str) -> None:
    result = subprocess.run(
        [
            *ostiary_command(),
            "users",
            "create",
            "--username",
            username,
            "--email",
            f"{username}@example.com",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        env=ostiary_env(settings, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def sign_in(base: str, client: dict[str, str], username: str, scope: str) -> dict[str, str]:
    """The code flow over HTTP for a first-party client; returns the token response."""
    flow = Flow.start(client["client_id"])
    with httpx.Client(base_url=base) as http:
        page = http.get("/authorize", params=flow.params(scope=scope))
        (form,) = forms_of(page.text)
        done = http.post(form.action, data={**form.fields, "username": username, "password": PASSWORD})
        assert done.status_code == 303, done.text
        code = query_of(done.headers["location"])["code"]
        response = http.post("/token", data=flow.token_form(code), auth=(client["client_id"], client["client_secret"]))
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens
