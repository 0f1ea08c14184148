"""Test utility: run a package PoC for real against one installed version.

Creates (and caches by requirement set) a virtual environment with ``uv``, installs the
requirements, runs the PoC in a fresh temporary directory with a scrubbed environment,
and returns the exit code and the parsed last JSON line. The project's own runner
(apps/wargaming) does the same with the sandbox limits; this keeps the PoC tests
independent of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = str(Path(sys.executable).parent / "uv")
CACHE = Path(os.environ.get("IMMUNE_TEST_VENVS", Path(tempfile.gettempdir()) / "immune-test-venvs"))
# PyYAML 5.3.1 only builds from source with Cython < 3 (no wheel for Python 3.11).
BUILD_CONSTRAINTS = "Cython<3\n"


@dataclass
class PocResult:
    exit_code: int
    evidence: dict | None
    stdout: str
    stderr: str


def venv_for(requirements: list[str]) -> Path:
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:16]
    venv = CACHE / key
    python = venv / "bin" / "python"
    if python.exists() and (venv / ".complete").exists():
        return venv
    CACHE.mkdir(parents=True, exist_ok=True)
    # One build per key at a time: runs in parallel (pytest-xdist workers, another checkout's
    # suite) wait for it instead of building into the same folder at once.
    with (CACHE / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and (venv / ".complete").exists():
            return venv
        subprocess.run([UV, "venv", "--quiet", "--clear", "--python", sys.executable,
                        str(venv)], check=True)
        constraints = CACHE / f"build-constraints-{key}.txt"
        constraints.write_text(BUILD_CONSTRAINTS)
        done = subprocess.run(
            [UV, "pip", "install", "--quiet", "--python", str(python),
             "--build-constraint", str(constraints), *requirements],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"install of {requirements} failed:\n{done.stderr[-3000:]}")
        (venv / ".complete").write_text("ok")
    return venv


def run_poc(poc: Path, requirements: list[str], timeout: int = 60) -> PocResult:
    venv = venv_for(requirements)
    with tempfile.TemporaryDirectory(prefix="immune-poc-") as workdir:
        done = subprocess.run(
            [str(venv / "bin" / "python"), str(poc)], cwd=workdir, capture_output=True,
            text=True, timeout=timeout,
            env={"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"})
    evidence = None
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    if lines:
        try:
            evidence = json.loads(lines[-1])
        except ValueError:
            evidence = None
    return PocResult(done.returncode, evidence, done.stdout, done.stderr)


# --- The built-in package PoCs' headers, read independently of apps/wargaming/exploits.py --

PACKAGES = ROOT / "apps" / "wargaming" / "exploits" / "packages"
ADVISORY_DB = Path(os.environ.get("IMMUNE_PYPA_DB", "")
                   or ROOT.parent / "shared" / "data" / "pypa-advisory-db" / "vulns")
REQUIRED = ("immune-exploit", "package", "advisories", "cwe", "vulnerable", "fixed")
_HEADER = re.compile(r"^#\s*([a-z][a-z_-]*)\s*:\s*(.*?)\s*$")


def headers(poc: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (PACKAGES / poc).read_text(encoding="utf-8").splitlines()[:40]:
        if (match := _HEADER.match(line.strip())):
            found.setdefault(match.group(1).lower(), match.group(2))
    return found


def requires(poc: str) -> list[str]:
    return [r.strip() for r in headers(poc).get("requires", "").split(",") if r.strip()]


def advisories(poc: str) -> list[str]:
    return [a.upper() for a in re.split(r"[,\s]+", headers(poc)["advisories"]) if a]


def run_builtin(poc: str, version: str) -> tuple[PocResult, str]:
    """The built-in PoC against ``version`` of its package; the result must carry evidence
    naming that version. Returns the result and a detail text for assertion messages."""
    package = headers(poc)["package"]
    result = run_poc(PACKAGES / poc, [f"{package}=={version}", *requires(poc)])
    detail = f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.evidence is not None, detail
    assert result.evidence.get("version") == version, detail
    return result, detail
