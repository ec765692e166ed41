"""A small local server speaking Have I Been Pwned's range API, for the breached-password tests."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers import free_port

BREACHED = "qwertyuiop1234"
CLEAN = "a clean passphrase nobody has leaked"


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


@dataclass(frozen=True)
class Received:
    """One request as the range server saw it."""

    request_line: str
    path: str
    #: header names in lower case
    headers: dict[str, str]

    def text(self) -> str:
        """Everything the client sent, as text."""
        return "\n".join([self.request_line, *(f"{k}: {v}" for k, v in self.headers.items())])


@dataclass
class RangeServer:
    """Have I Been Pwned's range API on a loopback port, served from a thread.

    ``listed`` maps a password to its breach count (0 makes its suffix a padding entry).
    ``delay`` holds each answer back that many seconds; ``status`` answers every request
    with that status. Use it as a context manager; ``url`` is the API's base.
    """

    listed: Mapping[str, int] = field(default_factory=dict)
    delay: float = 0
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)

    def answer(self, prefix: str) -> bytes:
        lines = [
            f"{h[5:]}:{count}" for h, count in ((sha1_hex(p), c) for p, c in self.listed.items()) if h[:5] == prefix
        ]
        # The real service pads each answer to 800-1,000 lines with random zero-count suffixes.
        lines += [f"{secrets.token_hex(18).upper()[:35]}:0" for _ in range(20)]
        lines.sort()
        return "\r\n".join(lines).encode()

    def __enter__(self) -> RangeServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                owner.requests.append(Received(self.requestline, self.path, headers))
                if owner.delay:
                    owner._stop.wait(owner.delay)
                body = owner.answer(self.path.rpartition("/range/")[2]) if owner.status == 200 else b"oops"
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up waiting (the timeout test)
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A base URL nothing listens on: the service is down."""
    return f"http://127.0.0.1:{free_port()}"
