"""The HTTP exploits' shared harness (apps/wargaming/exploits/http/_http_harness.py): never
an exploit in the index, always copied into the sandbox beside the exploit that runs, so a
built-in or an operator's exploit can import it, and one that does not is unaffected."""

from __future__ import annotations

import hashlib
import shutil
import textwrap
from pathlib import Path

import pytest

from apps.wargaming import sandbox
from apps.wargaming.exploits import BUILTIN, HARNESS, exploit_for_cwe, exploit_index, parse_exploit
from apps.wargaming.runner import run_exploit

HTTP_CWES = ["CWE-22", "CWE-601", "CWE-611", "CWE-78", "CWE-79", "CWE-89", "CWE-918"]

# Where the harness is, next to the PoC, read-only and the built-in file byte for byte.
PROBE = textwrap.dedent('''\
    # immune-exploit: 1
    # package: none
    # title: where is the harness
    import hashlib, json, os, sys
    import _http_harness
    here = os.path.dirname(os.path.abspath(__file__))
    harness = os.path.abspath(_http_harness.__file__)
    with open(harness, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    try:
        open(harness, "a").close()
        writable = True
    except OSError:
        writable = False
    print(json.dumps({"exploited": False, "script_dir": here,
                      "harness_dir": os.path.dirname(harness), "sha256": digest,
                      "writable": writable, "work": sorted(os.listdir(here))}))
''')


def test_the_harness_is_not_an_exploit(tmp_path, settings):
    assert HARNESS.is_file() and HARNESS.parent == BUILTIN / "http"
    assert parse_exploit(HARNESS) is None
    # An operator's folder holding a copy of it beside their own exploit: only the exploit.
    mine = tmp_path / "my-pocs"
    mine.mkdir()
    shutil.copy(HARNESS, mine / HARNESS.name)
    (mine / "my_probe.py").write_text(PROBE)
    settings.WARGAME_EXPLOIT_DIRS = [str(mine)]
    listed = {e.path for e in exploit_index()}
    assert mine / "my_probe.py" in listed
    assert not {p for p in listed if p.name == HARNESS.name}
    # the seven built-in HTTP exploits are still the ones found for their CWEs
    for cwe in HTTP_CWES:
        exploit = exploit_for_cwe([cwe])
        assert exploit is not None and exploit.path.parent == BUILTIN / "http", cwe
        assert "from _http_harness import" in exploit.path.read_text()


def _probe_phase(tmp_path: Path):
    from django.conf import settings

    folder = tmp_path / "operator-pocs"  # no harness in it: the sandbox brings its own
    folder.mkdir()
    path = folder / "where_is_the_harness.py"
    path.write_text(PROBE)
    return run_exploit(parse_exploit(path), Path(settings.WARGAME_PYTHON), name="baseline")


@pytest.mark.skipif(not sandbox.status().confined, reason="needs bubblewrap")
def test_the_harness_is_beside_the_exploit_in_the_sandbox(tmp_path):
    phase = _probe_phase(tmp_path)
    assert phase.outcome == "blocked", (phase.reason, phase.output)
    evidence = phase.evidence
    assert evidence["script_dir"] == evidence["harness_dir"] == "/work"
    assert evidence["sha256"] == hashlib.sha256(HARNESS.read_bytes()).hexdigest()
    assert evidence["writable"] is False
    assert evidence["work"] == [HARNESS.name, "where_is_the_harness.py"]


def test_the_harness_is_beside_the_exploit_unsandboxed_too(tmp_path, settings):
    settings.WARGAME_BWRAP = "/nonexistent/bwrap"
    settings.WARGAME_ALLOW_UNSANDBOXED = True
    sandbox.reset_probe()
    try:
        phase = _probe_phase(tmp_path)
    finally:
        sandbox.reset_probe()
    assert phase.outcome == "blocked", (phase.reason, phase.output)
    assert phase.evidence["script_dir"] == phase.evidence["harness_dir"]
    assert phase.evidence["sha256"] == hashlib.sha256(HARNESS.read_bytes()).hexdigest()


SERVICE = textwrap.dedent('''
    import argparse
    from http.server import BaseHTTPRequestHandler, HTTPServer
    parser = argparse.ArgumentParser(); parser.add_argument("--port", type=int)
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"open")
        def log_message(self, *args):
            pass
    HTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
''')
HEADER = "# immune-exploit: 1\n# kind: http\n# cwe: CWE-200\n# target: GET /\n"
WITH_HARNESS = HEADER + textwrap.dedent('''\
    from _http_harness import Reporter, Target, run
    report = Reporter("CWE-200")
    def attack(target: Target) -> int:
        resp = target.request("GET", "/")
        if resp is None:
            return report.unreachable(target)
        return report(resp.body == b"open", evidence="the door is open",
                      requests=target.requests)
    if __name__ == "__main__":
        run(attack, report)
''')
SELF_CONTAINED = HEADER + textwrap.dedent('''\
    import json, os, sys, urllib.request
    body = urllib.request.urlopen(os.environ["IMMUNE_TARGET_URL"] + "/").read()
    print(json.dumps({"exploited": body == b"open", "cwe": "CWE-200"}))
    sys.exit(1 if body == b"open" else 0)
''')


@pytest.mark.skipif(not sandbox.status().confined, reason="needs bubblewrap")
@pytest.mark.parametrize("layout", ["two sandboxes", "one sandbox"])
@pytest.mark.parametrize("style", ["harness", "self-contained"])
def test_an_operators_http_exploit_with_or_without_the_harness(tmp_path, monkeypatch,
                                                               settings, layout, style):
    from apps.wargaming.http_runs import http_phase
    from tests.factories import git, make_repo

    if layout == "one sandbox":
        monkeypatch.setattr(sandbox, "_can_share_network", lambda: False)
    elif not sandbox._can_share_network():
        pytest.skip("needs root and ip netns")
    repo = make_repo(tmp_path / "repo", {"service.py": SERVICE})
    mine = tmp_path / "my-pocs"
    mine.mkdir()
    (mine / "open_door.py").write_text(WITH_HARNESS if style == "harness" else SELF_CONTAINED)
    settings.WARGAME_EXPLOIT_DIRS = [str(mine)]
    exploit = exploit_for_cwe(["CWE-200"])
    assert exploit is not None and exploit.path == mine / "open_door.py"
    phase = http_phase(exploit=exploit, repo=str(repo),
                       commit=git(repo, "rev-parse", "HEAD").strip(),
                       command="python service.py --port {port}", ready_path="/",
                       name="baseline")
    assert phase.outcome == "exploited", (phase.reason, phase.output)
    assert phase.exit_code == 1 and phase.evidence["cwe"] == "CWE-200"
    assert layout in phase.sandbox["layout"]
    if style == "harness":
        assert phase.evidence["evidence"] == "the door is open"
        assert phase.evidence["requests"] == 1
