"""Test utility: what a hostile process tries from inside a wargame sandbox.

``SNOOP`` is Python source that defines ``snoop(plan)``: it reads every process
environment it can see, the files in ``plan["read"]``, writes ``plan["token"]`` to every
path in ``plan["write"]``, connects to the Unix sockets in ``plan["unix"]`` and to the host
services' TCP ports, and asks the build proxy for a loopback service. It returns what it
got. ``host_plan()`` names the real targets on this machine; ``assert_confined()`` checks a
snoop report and the host afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import uuid
from pathlib import Path

from django.conf import settings

CANARY = "server-secret-canary-6c1f0e2d9b8a7766"
SECRET_NAMES = ("SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN", "REDIS_URL")

SNOOP = r'''
import glob, json, os, socket

def snoop(plan):
    found = {"uid": os.getuid(), "secrets": {}, "reads": {}, "writes": {}, "unix": {},
             "tcp": {}, "proxy": None}
    names = ("SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN", "REDIS_URL")
    for env_file in glob.glob("/proc/*/environ") + ["/proc/self/environ"]:
        try:
            text = open(env_file, "rb").read().decode("latin-1")
        except OSError:
            continue
        for item in text.split("\0"):
            key, _, value = item.partition("=")
            if key in names or "canary" in value:
                found["secrets"][env_file + ":" + key] = value
    for path in plan["read"]:
        try:
            with open(path, "rb") as handle:
                found["reads"][path] = "READ:" + handle.read(120).decode("latin-1")
        except OSError as exc:
            found["reads"][path] = "DENIED:" + type(exc).__name__
    for path in plan["write"]:
        try:
            with open(path, "w") as handle:
                handle.write(plan["token"])
            found["writes"][path] = "WROTE"
        except OSError as exc:
            found["writes"][path] = "DENIED:" + type(exc).__name__
    for path in plan["unix"]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(path)
            found["unix"][path] = "CONNECTED"
        except OSError as exc:
            found["unix"][path] = "DENIED:" + type(exc).__name__
        finally:
            sock.close()
    for host, port in plan["tcp"]:
        try:
            socket.create_connection((host, port), timeout=2).close()
            found["tcp"]["%s:%s" % (host, port)] = "CONNECTED"
        except OSError as exc:
            found["tcp"]["%s:%s" % (host, port)] = "DENIED:" + type(exc).__name__
    try:  # the index proxy, where there is one: ask it for the host's PostgreSQL
        sock = socket.create_connection(("127.0.0.1", 3128), timeout=2)
        # (CR LF spelled as bytes: setuptools rewrites a backslash-r-n in setup.py source)
        sock.sendall(b"CONNECT 127.0.0.1:5432 HTTP/1.1" + bytes([13, 10]) * 2)
        found["proxy"] = sock.recv(200).decode("latin-1").splitlines()[0]
        sock.close()
    except OSError as exc:
        found["proxy"] = "DENIED:" + type(exc).__name__
    return found
'''


def host_plan(token: str | None = None) -> dict:
    """Real targets on this host: secrets, the checkout, the database file, the services."""
    token = token or uuid.uuid4().hex
    data_dir = Path(settings.DATA_DIR)
    data_dir.mkdir(parents=True, exist_ok=True)
    sqlite = data_dir / "sandbox-probe.sqlite3"  # a world-readable file like the real one
    sqlite.write_text(f"SQLite format 3 {CANARY}")
    sqlite.chmod(0o644)
    unix = sorted({*glob.glob("/run/**/*.s.PGSQL.*", recursive=True),
                   *glob.glob("/var/run/postgresql/.s.PGSQL.*"),
                   *glob.glob("/run/redis/*.sock"), *glob.glob("/tmp/*.sock"),
                   "/var/run/postgresql/.s.PGSQL.5432"})
    return {
        "token": token,
        "read": [str(Path(settings.BASE_DIR) / "immune" / "settings.py"), str(sqlite),
                 "/etc/shadow", "/etc/postgresql", "/root/.bash_history"],
        "write": [f"/tmp/{token}-tmp", f"/var/tmp/{token}-vartmp", f"/dev/shm/{token}-shm",
                  str(data_dir / f"{token}-data"), str(Path(settings.BASE_DIR) / token),
                  str(Path(settings.WARGAME_ENV_DIR) / token)],
        "unix": unix,
        "tcp": [["127.0.0.1", 5432], ["127.0.0.1", 6379], ["127.0.0.1", 5672]],
    }


def snoop_script(plan: dict, *, then: str = "") -> str:
    """A standalone script that snoops and prints ``SNOOP:<json>``, then runs ``then``."""
    return (SNOOP + "\nimport json, sys\n"
            f"report = snoop(json.loads({json.dumps(plan)!r}))\n"
            "print('SNOOP:' + json.dumps(report), flush=True)\n" + then)


def report_from(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if "SNOOP:" in line:
            return json.loads(line.split("SNOOP:", 1)[1])
    raise AssertionError(f"no snoop report in:\n{text[-3000:]}")


def assert_confined(report: dict, plan: dict, *, whole_text: str = "") -> None:
    """Nothing secret seen, nothing read, nothing written on the host, nothing reached."""
    assert report["uid"] != 0
    assert report["secrets"] == {}, report["secrets"]
    assert CANARY not in json.dumps(report) and CANARY not in whole_text
    for path, outcome in report["reads"].items():
        assert outcome.startswith("DENIED"), (path, outcome)
    for path in plan["write"]:
        assert not os.path.exists(path), f"{path} was written on the host"
    for path, outcome in report["unix"].items():
        assert outcome.startswith("DENIED"), (path, outcome)
    for target, outcome in report["tcp"].items():
        assert outcome.startswith("DENIED"), (target, outcome)
    assert report["proxy"] is None or not report["proxy"].startswith("HTTP/1.1 200"), \
        report["proxy"]
