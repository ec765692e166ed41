"""Running an example of examples/ by its one command, as its README says, against a test
Ostiary: the command's process lives for the ``async with`` and its output goes to a log
that a failed assertion shows."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers import REPO_ROOT

#: the examples start in a second or two; a loaded machine may take several times that
START_TIMEOUT = 60.0


@dataclass
class Running:
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@asynccontextmanager
async def running(command: list[str], env: dict[str, str], url: str, log: Path) -> AsyncIterator[Running]:
    """Start ``command`` in the repository and wait until ``url`` answers (any status)."""
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    example = Running(url, log)
    try:
        await _wait_until_answering(process, example)
        yield example
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 15)


async def _wait_until_answering(process: subprocess.Popen[bytes], example: Running) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the example exited with {process.returncode}:\n{example.output()}")
            try:
                await http.get(example.url)
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the example did not answer at {example.url}:\n{example.output()}")
            await asyncio.sleep(0.1)
