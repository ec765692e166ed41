"""A throwaway PostgreSQL cluster for fault tests: ``initdb`` into a temporary directory,
``pg_ctl`` on a free loopback port, stopped and deleted afterwards. A test may stop and
start it (``pg_ctl stop -m fast``), which the machine's shared PostgreSQL must never see.

PostgreSQL refuses to run as root: when the tests run as root, the cluster runs as the
``postgres`` system user, in a directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

#: where Debian and Ubuntu install the server binaries (one directory per major version)
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
START_TIMEOUT = 30


def server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first; None if absent."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    versions = sorted(DEBIAN_BINARIES.glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3]), reverse=True)
    return versions[0].parent if versions else None


@dataclass
class Cluster:
    binaries: Path
    directory: Path
    port: int
    #: the system user the server runs as (None: the current one)
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT), "-l", str(self.directory / "server.log"), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``fast`` ends every session (57P01) and refuses new ones
        while it shuts down (57P03)."""
        self._pg_ctl("stop", "-w", "-m", mode)

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _pg_ctl(self, *args: str) -> None:
        self.run(str(self.binaries / "pg_ctl"), "-D", str(self.data), *args)

    def run(self, *command: str) -> None:
        """A command as the cluster's user; raises with its output (and the server log) on failure."""
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{self.log()}"
            )


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A running cluster (superuser ``postgres``, trust authentication on loopback only),
    stopped and deleted when the block ends, whatever happened in it."""
    binaries = server_binaries()
    if binaries is None:
        if os.environ.get("OSTIARY_REQUIRE_PG_CLUSTER"):
            pytest.fail("initdb and pg_ctl are required (OSTIARY_REQUIRE_PG_CLUSTER) but not installed")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    run_as = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="ostiary-pg-"))
    if run_as:
        user = pwd.getpwnam(run_as)
        os.chown(directory, user.pw_uid, user.pw_gid)
    cluster = Cluster(binaries, directory, free_port(), run_as)
    try:
        cluster.run(
            str(binaries / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        cluster.start()
        yield cluster
    finally:
        if cluster.is_running():
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
