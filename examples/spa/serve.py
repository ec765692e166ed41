"""Serves the single-page app (index.html, app.js, style.css: no build step) on its own
origin, with ``/config.json`` telling the page its issuer and client id, under a strict
Content-Security-Policy: scripts and styles from this origin only, ``fetch()`` to this
origin and the issuer's, no inline code, no frames, Trusted Types for any DOM sink.

    python examples/spa/serve.py --client-id ID [--issuer http://127.0.0.1:8000] [--port 8002]

``examples/spa/run.sh`` registers the client and runs this in one command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
#: path -> file; the callback is the app's own page
FILES = {"/": "index.html", "/callback": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class App(ThreadingHTTPServer):
    def __init__(self, host: str, port: int, url: str, issuer: str, client_id: str) -> None:
        super().__init__((host, port), Handler)
        self.url = url
        self.config = json.dumps(
            {
                "issuer": issuer,
                "client_id": client_id,
                "redirect_uri": url + "/callback",
                "post_logout_redirect_uri": url + "/",
            }
        ).encode()
        self.response_headers = {
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; style-src 'self'; "
                f"connect-src 'self' {origin_of(issuer)}; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            # the callback URL holds the code: never sent to anyone as a Referer
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }


class Handler(BaseHTTPRequestHandler):
    server: App

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if self.headers.get("Host") != urlsplit(self.server.url).netloc:
            # The registered redirect URI and CORS origin name one host: stay on it.
            self.answer(308, b"", "text/plain", Location=self.server.url + self.path)
        elif path == "/config.json":
            self.answer(200, self.server.config, "application/json")
        elif path in FILES:
            name = FILES[path]
            self.answer(200, (HERE / name).read_bytes(), TYPES[Path(name).suffix] + "; charset=utf-8")
        else:
            self.answer(404, b"not found\n", "text/plain; charset=utf-8")

    def answer(self, status: int, body: bytes, content_type: str, **extra: str) -> None:
        self.send_response(status)
        for name, value in {**self.server.response_headers, **extra, "Content-Type": content_type}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--client-id", default=os.environ.get("SPA_CLIENT_ID"), help="default: $SPA_CLIENT_ID")
    parser.add_argument("--issuer", default=os.environ.get("OSTIARY_ISSUER", "http://127.0.0.1:8000"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--url", help="where browsers reach the app (default: http://HOST:PORT)")
    args = parser.parse_args(argv)
    if not args.client_id:
        parser.error("give --client-id or set SPA_CLIENT_ID (examples/spa/run.sh registers a client)")
    url = (args.url or f"http://{args.host}:{args.port}").rstrip("/")
    app = App(args.host, args.port, url, args.issuer.rstrip("/"), args.client_id)
    print(f"Example single-page app on {url}/ (issuer {args.issuer})", flush=True)
    try:
        app.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.server_close()


if __name__ == "__main__":
    main()
