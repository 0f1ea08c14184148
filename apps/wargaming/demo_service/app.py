"""A small, DELIBERATELY VULNERABLE web service for immune's wargaming demo.

Every endpoint below has one classic flaw (its CWE is named in the handler). The
wargaming runner starts this service from an unpatched and from a patched revision and
runs the HTTP exploit for the patch's CWE against both. Never expose it: it binds
127.0.0.1 only. Standard library only, no Django.

    python app.py --port 8000        # --port 0 picks a free port

Start-up creates, in the current working directory (the runner uses a scratch checkout):

* ``app.db``: SQLite with ``items(name, price)`` and ``secrets(value)``; ``secrets`` holds
  the fixed canary ``immune-canary-7f3a`` that no endpoint returns on purpose;
* ``public/readme.txt``: served by ``/files``;
* ``private/secret.txt``: the fixed canary ``immune-file-canary-2b9d``, outside ``public/``.

Endpoint contract (what the exploits in apps/wargaming/exploits/http/ attack):

    GET  /health          -> 200 "ok"                        (readiness)
    GET  /items?name=     -> JSON rows [{"name", "price"}]   CWE-89  SQL injection
    GET  /files?name=     -> bytes of public/<name>          CWE-22  path traversal
    GET  /ping?host=      -> output of "echo pinging <host>" CWE-78  OS command injection
    GET  /hello?name=     -> HTML greeting                   CWE-79  reflected XSS
    GET  /fetch?url=      -> body fetched server-side        CWE-918 SSRF
    POST /xml             -> text content of the document    CWE-611 XXE
    GET  /go?next=        -> 302 to <next>                   CWE-601 open redirect
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
import xml.sax
import xml.sax.handler
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DB_PATH = Path("app.db")
PUBLIC_DIR = Path("public")
PRIVATE_DIR = Path("private")
SECRET_CANARY = "immune-canary-7f3a"  # noqa: S105 (a public canary, not a credential)
FILE_CANARY = "immune-file-canary-2b9d"
ITEMS = [("apple", 1.25), ("banana", 0.5), ("cherry", 3.0)]
FETCH_TIMEOUT = 5


def setup_data() -> None:
    """Create a fresh database and the public/private files in the working directory."""
    if DB_PATH.exists():
        DB_PATH.unlink()
    with sqlite3.connect(DB_PATH) as db:
        db.execute("CREATE TABLE items (name TEXT, price REAL)")
        db.executemany("INSERT INTO items (name, price) VALUES (?, ?)", ITEMS)
        db.execute("CREATE TABLE secrets (value TEXT)")
        db.execute("INSERT INTO secrets (value) VALUES (?)", (SECRET_CANARY,))
    db.close()
    PUBLIC_DIR.mkdir(exist_ok=True)
    (PUBLIC_DIR / "readme.txt").write_text("Welcome to the demo service.\n")
    PRIVATE_DIR.mkdir(exist_ok=True)
    (PRIVATE_DIR / "secret.txt").write_text(FILE_CANARY + "\n")


class TextCollector(xml.sax.handler.ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def characters(self, content: str) -> None:
        self.parts.append(content)


class Handler(BaseHTTPRequestHandler):
    server_version = "immune-demo/1"

    # -- plumbing ---------------------------------------------------------------------

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def send(self, status: int, body: bytes | str, content_type: str = "text/plain",
             headers: dict[str, str] | None = None) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        if content_type.startswith(("text/", "application/json")):
            content_type += "; charset=utf-8"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, data: object) -> None:
        self.send(status, json.dumps(data), "application/json")

    def param(self, name: str, default: str | None = "") -> str | None:
        values = parse_qs(urlsplit(self.path).query, keep_blank_values=True).get(name)
        return values[0] if values else default

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        route = {
            "/health": self.health,
            "/items": self.items,
            "/files": self.files,
            "/ping": self.ping,
            "/hello": self.hello,
            "/fetch": self.fetch,
            "/go": self.go,
        }.get(urlsplit(self.path).path)
        if route is None:
            self.send(404, "not found\n")
        else:
            route()

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        if urlsplit(self.path).path == "/xml":
            self.xml()
        else:
            self.send(404, "not found\n")

    # -- endpoints --------------------------------------------------------------------

    def health(self) -> None:
        self.send(200, "ok")

    def items(self) -> None:
        """CWE-89: the name is formatted into the SQL text."""
        name = self.param("name", None)
        if name is None:
            query = "SELECT name, price FROM items ORDER BY name"
        else:
            query = f"SELECT name, price FROM items WHERE name = '{name}'"  # noqa: S608 (deliberate CWE-89)
        try:
            with sqlite3.connect(DB_PATH) as db:
                rows = db.execute(query).fetchall()
            db.close()
        except sqlite3.Error as exc:
            self.send_json(500, {"error": str(exc)})
            return
        self.send_json(200, [{"name": row[0], "price": row[1]} for row in rows])

    def files(self) -> None:
        """CWE-22: the name is joined to public/ without any check."""
        name = self.param("name")
        path = os.path.join(PUBLIC_DIR, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            self.send(404, "no such file\n")
            return
        self.send(200, data, "application/octet-stream")

    def ping(self) -> None:
        """CWE-78: the host goes into a shell command line."""
        host = self.param("host")
        done = subprocess.run(  # noqa: S602 (deliberate CWE-78)
            "echo pinging " + host, shell=True, capture_output=True, timeout=10)
        self.send(200, done.stdout)

    def hello(self) -> None:
        """CWE-79: the name is reflected into HTML unescaped."""
        name = self.param("name", "world")
        page = f"<!doctype html>\n<html><body><h1>Hello, {name}!</h1></body></html>\n"
        self.send(200, page, "text/html")

    def fetch(self) -> None:
        """CWE-918: any URL (any host, any scheme) is fetched server-side."""
        url = self.param("url")
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as resp:  # noqa: S310 (deliberate CWE-918)
                body = resp.read(1_000_000)
        except (OSError, ValueError) as exc:
            self.send(502, f"fetch failed: {exc}\n")
            return
        self.send(200, body)

    def xml(self) -> None:
        """CWE-611: external general entities are resolved while parsing."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1_000_000))
        collector = TextCollector()
        parser = xml.sax.make_parser()  # noqa: S317 (deliberate CWE-611)
        parser.setFeature(xml.sax.handler.feature_external_ges, True)
        parser.setContentHandler(collector)
        try:
            parser.parse(io.BytesIO(body))
        except (xml.sax.SAXException, OSError, ValueError) as exc:
            self.send(400, f"bad xml: {exc}\n")
            return
        self.send(200, "".join(collector.parts))

    def go(self) -> None:
        """CWE-601: redirects wherever `next` says."""
        target = self.param("next", "/")
        self.send(302, "redirecting\n", headers={"Location": target})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="deliberately vulnerable demo service")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    setup_data()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"demo service listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
