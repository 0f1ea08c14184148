"""Runs INSIDE a wargame sandbox (stdlib only, any Python 3.8+): the phase's own init work.

It is bound read-only into the sandbox at ``/immune/driver.py`` and started by the
sandbox's interpreter, so it has exactly the sandbox's rights and nothing more.

``relay SOCKET PORT SPEC-JSON``
    forward ``127.0.0.1:PORT`` (in the sandbox's own network namespace) to the index proxy's
    Unix socket, then run ``spec["commands"]`` (an environment build: a list of argv lists)
    one after the other, stopping at the first that fails, and exit with its status. With
    ``spec["export"]`` (``{"path", "fd"}``), once they all succeeded: kill every other
    process of the sandbox, then write ``path`` as a tar stream to descriptor ``fd`` (how
    the built environment leaves the sandbox: a bounded stream the worker unpacks).
``await URL TIMEOUT -- ARGV...``
    wait until URL answers 200 (the service under test, in this phase's network namespace
    but another sandbox), then exec ARGV (the exploit). Exit 97 with ``NOT_READY`` on
    stderr when it never did.
``http SPEC-JSON``
    start the service under test, wait until it answers, run the exploit against it, and
    print one JSON line: the service's readiness and output, the exploit's exit code,
    stdout and stderr. Service and exploit share this phase's network namespace, and
    nothing else of the host.
"""

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request

PR_SET_DUMPABLE = 4


def _not_dumpable():
    # The service under test runs as the same uid: it must not open this process's
    # descriptors through /proc/<pid>/fd (where the phase's result goes).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _relay(unix_path, port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)

    def serve():
        while True:
            client, _ = server.accept()
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(unix_path)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


NOT_READY = "immune-driver: the service did not become ready"


def relay_main(argv):
    unix_path, port, spec = argv[0], int(argv[1]), json.loads(argv[2])
    _not_dumpable()  # the export descriptor is ours alone
    _relay(unix_path, port)
    for command in spec["commands"]:
        status = subprocess.call(command)
        if status != 0:
            sys.exit(status)
    export = spec.get("export")
    if export:
        if export.get("kill_others"):  # only inside a PID namespace of the build's own
            _kill_everyone_else()
        _export(export["path"], export["fd"])
    sys.exit(0)


def _kill_everyone_else():
    """Nothing a build started (a daemon) may touch the environment while it is exported."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)  # every process we may signal but ourselves and init
    time.sleep(0.2)


def _export(path, fd):
    with os.fdopen(fd, "wb") as stream, tarfile.open(fileobj=stream, mode="w|") as tar:
        tar.add(path, arcname=".", recursive=True)


def await_main(argv):
    url, timeout = argv[0], float(argv[1])
    command = argv[argv.index("--") + 1:]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    os.execv(command[0], command)  # noqa: S606 (the exploit, sandboxed)
        except OSError:
            time.sleep(0.1)
    sys.stderr.write(NOT_READY + "\n")
    sys.exit(97)


class _Capture:
    """At most ``limit`` bytes of a stream; the rest is read and dropped."""

    def __init__(self, stream, limit):
        self.data, self.dropped = bytearray(), 0
        self._thread = threading.Thread(target=self._read, args=(stream, limit), daemon=True)
        self._thread.start()

    def _read(self, stream, limit):
        for chunk in iter(lambda: stream.read(65536), b""):
            room = limit - len(self.data)
            self.data += chunk[:max(room, 0)]
            self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self, wait=2.0):
        self._thread.join(wait)
        return self.data.decode("utf-8", "replace")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url, service, deadline):
    while time.monotonic() < deadline:
        if service.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def http_main(spec):
    _not_dumpable()
    limit = spec["output_limit"]
    port = _free_port()
    service_argv = [a.replace("{port}", str(port)) for a in spec["service_argv"]]
    env = dict(spec["env"])
    service = subprocess.Popen(service_argv, cwd=spec["service_cwd"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    service_out = _Capture(service.stdout, limit)
    result = {"port": port, "service_ready": False}
    deadline = time.monotonic() + spec["ready_timeout_s"]
    if _ready(f"http://127.0.0.1:{port}{spec['ready_path']}", service, deadline):
        result["service_ready"] = True
        exploit_env = dict(env, IMMUNE_TARGET_URL=f"http://127.0.0.1:{port}")
        exploit = subprocess.Popen(spec["exploit_argv"], cwd=spec["exploit_cwd"],
                                   env=exploit_env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = _Capture(exploit.stdout, limit), _Capture(exploit.stderr, limit)
        try:
            exploit.wait(timeout=spec["exploit_timeout_s"])
            result["exit_code"], result["timed_out"] = exploit.returncode, False
        except subprocess.TimeoutExpired:
            exploit.kill()
            exploit.wait()
            result["exit_code"], result["timed_out"] = None, True
        result["stdout"], result["stderr"] = out.text(), err.text()
    else:
        result["service_exit_code"] = service.poll()
    if service.poll() is None:
        service.kill()
    service.wait()
    result["service_output"] = service_out.text()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def main():
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "relay":
        relay_main(rest)
    elif mode == "await":
        await_main(rest)
    elif mode == "http":
        http_main(json.loads(rest[0]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
