"""Functional tests of the demo service: the normal behaviour of every endpoint.

Run in the service directory with ``python -m unittest test_app``. A patch that fixes a
vulnerability must keep these green; one that breaks the endpoint fails them. Standard
library only. The service runs from this directory's app.py in a scratch working
directory, on a port it picks itself.

/fetch is exercised against a loopback upstream started here; its ``host:port`` is passed
in ``DEMO_FETCH_ALLOWED_HOSTS`` so that a patch restricting /fetch to an allow-list of
hosts (read from that variable) still serves it.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

APP = Path(__file__).resolve().parent / "app.py"
UPSTREAM_BODY = b"hello from upstream\n"


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(UPSTREAM_BODY)))
        self.end_headers()
        self.wfile.write(UPSTREAM_BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


class DemoServiceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()
        cls.upstream_netloc = f"127.0.0.1:{cls.upstream.server_port}"
        cls.workdir = tempfile.TemporaryDirectory(prefix="demo-service-test-")
        env = dict(os.environ, DEMO_FETCH_ALLOWED_HOSTS=cls.upstream_netloc)
        cls.proc = subprocess.Popen(
            [sys.executable, str(APP), "--port", "0"], cwd=cls.workdir.name, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = cls.proc.stdout.readline()
        if "listening on" not in line:
            cls.tearDownClass()
            raise RuntimeError(f"service did not start: {line!r}")
        cls.port = int(line.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
        cls.proc.stdout.close()
        cls.upstream.shutdown()
        cls.upstream.server_close()
        cls.workdir.cleanup()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get(self, path: str, **params: str) -> tuple[int, dict[str, str], bytes]:
        if params:
            path += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return self.request("GET", path)

    def test_health(self) -> None:
        status, _, body = self.get("/health")
        self.assertEqual((status, body), (200, b"ok"))

    def test_items_by_name(self) -> None:
        status, headers, body = self.get("/items", name="apple")
        self.assertEqual(status, 200)
        self.assertIn("application/json", headers["content-type"])
        self.assertEqual(json.loads(body), [{"name": "apple", "price": 1.25}])

    def test_items_unknown_name_and_listing(self) -> None:
        self.assertEqual(json.loads(self.get("/items", name="durian")[2]), [])
        names = [row["name"] for row in json.loads(self.get("/items")[2])]
        self.assertEqual(names, ["apple", "banana", "cherry"])

    def test_files(self) -> None:
        status, _, body = self.get("/files", name="readme.txt")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"Welcome to the demo service.\n")
        self.assertEqual(self.get("/files", name="missing.txt")[0], 404)

    def test_ping(self) -> None:
        status, _, body = self.get("/ping", host="example.com")
        self.assertEqual(status, 200)
        self.assertEqual(body.decode().strip(), "pinging example.com")

    def test_hello(self) -> None:
        status, headers, body = self.get("/hello", name="Ann")
        self.assertEqual(status, 200)
        self.assertIn("text/html", headers["content-type"])
        self.assertIn(b"Hello, Ann!", body)
        self.assertIn(b"Hello, world!", self.get("/hello")[2])

    def test_fetch(self) -> None:
        status, _, body = self.get("/fetch", url=f"http://{self.upstream_netloc}/page")
        self.assertEqual(status, 200)
        self.assertEqual(body, UPSTREAM_BODY)

    def test_xml(self) -> None:
        doc = b"<?xml version='1.0'?><greeting>hello <b>world</b></greeting>"
        status, _, body = self.request("POST", "/xml", body=doc,
                                       headers={"Content-Type": "application/xml"})
        self.assertEqual((status, body), (200, b"hello world"))
        self.assertEqual(self.request("POST", "/xml", body=b"<unclosed>")[0], 400)

    def test_redirect(self) -> None:
        status, headers, _ = self.get("/go", next="/items?name=apple")
        self.assertEqual(status, 302)
        self.assertEqual(headers["location"], "/items?name=apple")
        status, headers, _ = self.get("/go")
        self.assertEqual((status, headers["location"]), (302, "/"))

    def test_unknown_path(self) -> None:
        self.assertEqual(self.get("/nope")[0], 404)


if __name__ == "__main__":
    unittest.main()
