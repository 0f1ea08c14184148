"""The only way out of a build sandbox: an HTTPS CONNECT proxy to the package index.

An environment build needs the package index, but it runs untrusted build backends (an
sdist's ``setup.py``, a ``# requires:`` path). Sharing the host's network would hand them
every service on the host's loopback (PostgreSQL with local trust auth, Redis) and the
private network behind it. Instead the build keeps a network namespace of its own, and
inside it a relay (``sandbox_driver.py``) forwards ``127.0.0.1:<port>`` to this proxy's
Unix socket, bound into the sandbox. The proxy accepts only ``CONNECT host:443`` to the
hosts in ``WARGAME_INDEX_HOSTS`` (the index and its file host), refuses an address that
resolves to loopback, link-local or private space, and logs what it refused.

It is a few dozen lines of stdlib on purpose: it sees only TLS it cannot read, and it must
be obviously correct about the one decision it makes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import socketserver
import threading
import time
from pathlib import Path

import structlog

from apps.wargaming.sandbox import sandbox_uid

log = structlog.get_logger(__name__)

HEADER_LIMIT = 8192
HEADER_DEADLINE_S = 10  # the whole request head, not each recv
MAX_CONNECTIONS = 32  # at once, per build (a build backend may connect to the socket itself)
MAX_REFUSALS_KEPT = 50  # logged and kept; the rest are counted
#: Where the host's own services live: never a package index.
_INTERNAL = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")]
IDLE_TIMEOUT_S = 120


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        if not self.server.slots.acquire(blocking=False):
            self.server.refuse("too many connections at once", "")
            return
        try:
            self._serve(client)
        finally:
            self.server.slots.release()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        deadline = time.monotonic() + HEADER_DEADLINE_S
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or len(head) > HEADER_LIMIT:
                return
            client.settimeout(remaining)
            try:
                chunk = client.recv(1024)
            except OSError:
                return
            if not chunk:
                return
            head += chunk
        client.settimeout(30)
        line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
        target = self.server.check(line)
        if isinstance(target, str):
            self.server.refuse(target, line)
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            upstream = socket.create_connection(target, timeout=30)
        except OSError as exc:
            client.sendall(f"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nX-Error: "
                           f"{type(exc).__name__}\r\n\r\n".encode())
            return
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _pipe(client, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], IDLE_TIMEOUT_S)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                (b if sock is a else a).sendall(data)
            except OSError:  # the other side went away
                return


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, allowed_hosts: set[str]):
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.refused: list[str] = []
        self.refused_total = 0
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._lock = threading.Lock()
        super().__init__(path, _Handler)

    def refuse(self, reason: str, line: str) -> None:
        """Keep and log the first refusals; count the rest (a flood must not fill the log)."""
        with self._lock:
            self.refused_total += 1
            if len(self.refused) < MAX_REFUSALS_KEPT:
                self.refused.append(f"{line[:200]} ({reason})")
                log.warning("wargame.index_proxy_refused", request=line[:200], reason=reason)

    def check(self, line: str) -> tuple[str, int] | str:
        """The (address, port) to connect to, or why not."""
        parts = line.split()
        if len(parts) != 3 or parts[0] != "CONNECT":
            return "only CONNECT is allowed"
        host, _, port = parts[1].rpartition(":")
        host = host.strip("[]").lower()
        if port != "443" or host not in self.allowed_hosts:
            return f"{host}:{port} is not an allowed package index host"
        try:
            infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        except OSError:
            return f"{host} does not resolve"
        for *_, address in infos:
            ip = ipaddress.ip_address(address[0])
            if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified
                    or ip.is_multicast or any(ip in net for net in _INTERNAL)):
                return (address[0], 443)
        return f"{host} resolves only to loopback, link-local or internal addresses"


class IndexProxy:
    """``with IndexProxy(folder, hosts) as proxy:`` serves ``proxy.socket_path``."""

    def __init__(self, folder: Path, allowed_hosts: set[str]):
        self.socket_path = folder / "index-proxy.sock"
        self._server = _Server(str(self.socket_path), allowed_hosts)
        # Only the sandbox user connects to it (any user, where immune is not root).
        if os.geteuid() == 0:
            os.chown(self.socket_path, sandbox_uid(), sandbox_uid())
            os.chmod(self.socket_path, 0o600)
        else:
            os.chmod(self.socket_path, 0o666)  # noqa: S103
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="wargame-index-proxy", daemon=True)

    @property
    def refused(self) -> list[str]:
        extra = self._server.refused_total - len(self._server.refused)
        return [*self._server.refused, *([f"… and {extra} more"] if extra > 0 else [])]

    def __enter__(self) -> IndexProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
