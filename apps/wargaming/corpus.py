"""The wargame corpus: real release pairs and real code patches, attacked for real.

For every package PoC in the exploit library (built-in and ``WARGAME_EXPLOIT_DIRS``), the
PoC's vulnerable release (its ``# vulnerable:`` header) is wargamed against each later
release of the package on the package index the environments are built from
(``WARGAME_INDEX_URL``, PEP 691 JSON), up to and beyond the fix, so fix chains and
incomplete fixes show up as they really are. Then each earlier release is wargamed against
the vulnerable one: the upgrade a developer makes to a release that is still vulnerable
(the corpus would otherwise hold almost only effective upgrades, since every release after
a fix is one). Plus the demo service's effective and ineffective code patches, each
attacked by the HTTP exploit for its CWE (with a compile check and the service's tests).
Every outcome is an ordinary ``WargameRun`` (trigger ``corpus``, no patch);
``corpus_export`` writes them as JSON lines (docs/ml.md, "The corpus"). The ML stage
learns from these rows; wargaming only runs and stores them.

- **Which releases**: final releases (no pre-, dev- or yanked releases) later than the
  vulnerable one. Above ``max_per_package``, the first half of the cap is taken in order
  (where the fix and its follow-ups are) and the rest evenly spread over the later
  releases, the newest included. The ``max_earlier`` releases just before the vulnerable
  one, nearest first.
- **Resumable**: a pair whose run is stored is skipped (``retry_errors`` runs the pairs
  whose latest run ended ``error``, ``timeout`` or ``inconclusive`` again; the newest run
  of a pair is the one exported). Environments are cached by content (environments.py),
  so the vulnerable release is built once.
- Releases that do not install or import on ``WARGAME_PYTHON`` end ``error`` or
  ``inconclusive``: they stay in the corpus as they are (they are real), and teach nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from django.conf import settings
from django.utils import timezone
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from apps.inventory.git import exported_tree
from apps.wargaming import http_runs, runner
from apps.wargaming.compile_check import CompileResult, python_files, tree_compiles
from apps.wargaming.exploits import Exploit, exploit_for_cwe, exploit_index
from apps.wargaming.models import RunState, Verdict, WargameRun

log = structlog.get_logger(__name__)

CORPUS_TRIGGER = "corpus"
DEFAULT_MAX_PER_PACKAGE = 60
DEFAULT_MAX_EARLIER = 20
EXPORT_PATH = Path(settings.BASE_DIR) / "data" / "corpus" / "wargames.jsonl"

#: The demo service (apps/wargaming/demo_service) as a package of its own: its advisories
#: (``IMMUNE-DEMO-CWE-<n>``) name it, and its code patches are wargamed like the demo's.
DEMO_SERVICE = Path(__file__).resolve().parent / "demo_service"
DEMO_PACKAGE = "immune-demo-service"
DEMO_RELEASE = "1.0.0"
SERVICE_COMMAND = "python service/app.py --port {port}"
SERVICE_READY_PATH = "/health"
SERVICE_TEST_COMMAND = "python -m unittest discover -s service -p test_app.py"

#: Outcomes that say nothing about the pair: ``retry_errors`` runs them again (after a
#: network failure, or a PoC improved to decide where it could not).
NO_VERDICT = (Verdict.ERROR, Verdict.TIMEOUT, Verdict.INCONCLUSIVE)
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"

ReleaseLister = Callable[[str], list[str]]


@dataclass(frozen=True)
class Pair:
    """One wargame of the corpus: ``vulnerable`` attacked, then ``candidate``."""

    kind: str  # "package" (an upgrade) or "http" (a code patch of the demo service)
    package: str
    vulnerable: str
    candidate: str
    exploit: Exploit
    patch_file: Path | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.kind, self.package, self.vulnerable, self.candidate, self.exploit.name)

    @property
    def label(self) -> str:
        target = self.patch_file.name if self.patch_file else self.candidate
        return f"{self.package} {self.vulnerable} → {target} ({self.exploit.name})"


@dataclass
class BuildReport:
    planned: int = 0
    ran: int = 0
    skipped: int = 0
    verdicts: Counter = field(default_factory=Counter)
    packages: list[str] = field(default_factory=list)
    index_failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    exported: int | None = None
    export_path: str = ""

    def as_dict(self) -> dict:
        return {"planned": self.planned, "ran": self.ran, "skipped": self.skipped,
                "verdicts": dict(self.verdicts), "packages": self.packages,
                "index_failures": self.index_failures, "seconds": round(self.seconds, 1),
                "exported": self.exported, "export_path": self.export_path}


# --- Which pairs ------------------------------------------------------------------------------

def _file_version(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def index_releases(package: str, *, index_url: str | None = None,
                   timeout_s: float = 30.0) -> list[str]:
    """Final, installable, not yanked releases of ``package`` on the package index, oldest
    first (PEP 691's JSON simple API; PEP 592 yanking: a release is yanked when every file
    of it is)."""
    base = (index_url or settings.WARGAME_INDEX_URL).rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ValueError(f"the package index must be an http(s) URL, not {base!r}")
    request = urllib.request.Request(f"{base}/{canonicalize_name(package)}/",  # noqa: S310
                                     headers={"Accept": JSON_ACCEPT})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        data = json.load(response)
    files: dict[str, list[bool]] = {}
    for entry in data.get("files", []):
        version = _file_version(str(entry.get("filename", "")))
        if version is not None:
            files.setdefault(version, []).append(bool(entry.get("yanked")))
    releases = []
    for version, yanked in files.items():
        parsed = Version(version)
        if not parsed.is_prerelease and not parsed.is_devrelease and not all(yanked):
            releases.append(parsed)
    return [str(v) for v in sorted(set(releases))]


def later_releases(releases: Iterable[str], vulnerable: str, cap: int | None) -> list[str]:
    """The releases after ``vulnerable``, at most ``cap``: the first half of the cap in
    order, the rest spread evenly over the remaining releases (the newest included)."""
    floor = Version(vulnerable)
    later = sorted({Version(r) for r in releases if Version(r) > floor})
    if cap is None or len(later) <= cap:
        return [str(v) for v in later]
    if cap <= 0:
        return []
    head = later[:(cap + 1) // 2]
    rest, wanted = later[len(head):], cap - len(head)
    if wanted == 1:
        picked = [rest[-1]]
    else:
        picked = [rest[round(i * (len(rest) - 1) / (wanted - 1))] for i in range(wanted)]
    return [str(v) for v in head + sorted(set(picked))]


def earlier_releases(releases: Iterable[str], vulnerable: str, cap: int | None) -> list[str]:
    """The ``cap`` releases just before ``vulnerable``, nearest first: the upgrades a
    developer on an older release makes to the vulnerable one (old releases further back
    mostly no longer install or import on a current Python)."""
    ceiling = Version(vulnerable)
    earlier = sorted({Version(r) for r in releases if Version(r) < ceiling}, reverse=True)
    return [str(v) for v in (earlier if cap is None else earlier[:max(cap, 0)])]


def code_patch_files() -> list[Path]:
    return sorted((DEMO_SERVICE / "patches").glob("cwe-*.diff"))


def code_patch_cwe(path: Path) -> str:
    return "CWE-" + path.stem.split("-")[1]


def code_patch_version(path: Path) -> str:
    """The patched service as a PEP 440 local version: ``1.0.0+cwe89.effective``."""
    _cwe, number, kind = path.stem.split("-", 2)
    return f"{DEMO_RELEASE}+cwe{number}.{kind}"


def corpus_pairs(*, packages: Iterable[str] | None = None,
                 max_per_package: int | None = DEFAULT_MAX_PER_PACKAGE,
                 max_earlier: int | None = DEFAULT_MAX_EARLIER,
                 releases: ReleaseLister = index_releases,
                 report: BuildReport | None = None,
                 say: Callable[[str], None] = lambda _: None) -> list[Pair]:
    """Every pair of the corpus, in a stable order: per package and PoC, the vulnerable
    release against the later ones, then the earlier ones against the vulnerable one; the
    code patches last."""
    wanted = {canonicalize_name(p) for p in packages} if packages else None
    pairs: list[Pair] = []
    listed: dict[str, list[str] | None] = {}
    exploits = sorted((e for e in exploit_index() if e.kind == "package" and e.package),
                      key=lambda e: (e.package, e.name))
    for exploit in exploits:
        if wanted is not None and exploit.package not in wanted:
            continue
        if not exploit.vulnerable:
            say(f"  {exploit.name}: no '# vulnerable:' header, skipped")
            continue
        if exploit.package not in listed:
            try:
                listed[exploit.package] = releases(exploit.package)
            except Exception as exc:  # noqa: BLE001 (one package's index failure skips it)
                listed[exploit.package] = None
                if report is not None:
                    report.index_failures[exploit.package] = f"{type(exc).__name__}: {exc}"
                say(f"  {exploit.package}: the index did not answer ({exc}); skipped")
        if listed[exploit.package] is None:
            continue
        for candidate in later_releases(listed[exploit.package], exploit.vulnerable,
                                        max_per_package):
            pairs.append(Pair("package", exploit.package, exploit.vulnerable, candidate,
                              exploit))
        for baseline in earlier_releases(listed[exploit.package], exploit.vulnerable,
                                         max_earlier):
            pairs.append(Pair("package", exploit.package, baseline, exploit.vulnerable,
                              exploit))
    if wanted is None or DEMO_PACKAGE in wanted:
        for path in code_patch_files():
            exploit = exploit_for_cwe([code_patch_cwe(path)])
            if exploit is None:
                say(f"  {path.name}: no HTTP exploit for {code_patch_cwe(path)}, skipped")
                continue
            pairs.append(Pair("http", DEMO_PACKAGE, DEMO_RELEASE, code_patch_version(path),
                              exploit, path))
    return pairs


# --- Running them -----------------------------------------------------------------------------

def _run_name(run: WargameRun) -> str:
    return Path(run.exploit).name


def stored_runs() -> dict[tuple, WargameRun]:
    """The newest finished corpus run of every pair, by pair key."""
    latest: dict[tuple, WargameRun] = {}
    for run in (WargameRun.objects.filter(trigger=CORPUS_TRIGGER, state=RunState.FINISHED)
                .order_by("id")):
        latest[(run.kind, run.package, run.baseline_version, run.patched_version,
                _run_name(run))] = run
    return latest


def corpus_build(*, packages: Iterable[str] | None = None,
                 max_per_package: int | None = DEFAULT_MAX_PER_PACKAGE,
                 max_earlier: int | None = DEFAULT_MAX_EARLIER, retry_errors: bool = False,
                 releases: ReleaseLister = index_releases,
                 say: Callable[[str], None] = lambda _: None,
                 export_to: Path | None = EXPORT_PATH, command: str = "") -> BuildReport:
    """Run every pair not stored yet (and, with ``retry_errors``, those whose newest run
    ended error, timeout or inconclusive), then export the whole corpus to ``export_to``."""
    from apps.wargaming.services import wargame_run_package

    started = time.monotonic()
    report = BuildReport()
    pairs = corpus_pairs(packages=packages, max_per_package=max_per_package,
                         max_earlier=max_earlier, releases=releases, report=report, say=say)
    report.planned = len(pairs)
    report.packages = sorted({p.package for p in pairs})
    if any(p.kind == "http" for p in pairs):
        demo_advisories_import()
    done = stored_runs()
    todo = [p for p in pairs if p.key not in done
            or (retry_errors and done[p.key].verdict in NO_VERDICT)]
    report.skipped = len(pairs) - len(todo)
    say(f"corpus: {len(pairs)} pairs over {len(report.packages)} packages; "
        f"{report.skipped} already stored, {len(todo)} to run")
    repository = None
    try:
        for index, pair in enumerate(todo, start=1):
            t0 = time.monotonic()
            if pair.kind == "http":
                if repository is None:
                    repository = DemoRepository()
                run = run_code_patch(pair, repository)
            else:
                run = wargame_run_package(package=pair.package, vulnerable=pair.vulnerable,
                                          fixed=pair.candidate, exploit_path=str(pair.exploit.path),
                                          trigger=CORPUS_TRIGGER)
            report.ran += 1
            report.verdicts[run.verdict] += 1
            elapsed = time.monotonic() - started
            left = (elapsed / index) * (len(todo) - index)
            say(f"[{index}/{len(todo)}] {pair.label}: {run.verdict} in "
                f"{time.monotonic() - t0:.1f} s (elapsed {elapsed / 60:.1f} min, about "
                f"{left / 60:.0f} min left)")
    finally:
        if repository is not None:
            repository.close()
    if export_to is not None:
        report.exported = corpus_export(export_to, command=command)
        report.export_path = str(export_to)
    report.seconds = time.monotonic() - started
    log.info("wargaming.corpus_built", **report.as_dict())
    return report


def demo_advisories_import() -> None:
    """The demo service's advisories (what its code patches' runs cover) in the database,
    as ``manage.py demo`` imports them: a corpus row teaches only with its advisory's facts."""
    from apps.advisories.services import advisories_import

    report = advisories_import(sources=[str(DEMO_SERVICE / "advisories")],
                               source_name="immune-demo")
    if report.failed:
        raise RuntimeError(f"the demo service's advisories failed to import: {report.failures}")


class DemoRepository:
    """A git repository of the demo service: the release as the first commit, and one
    commit per code patch on a branch of its own (like a reviewer's proposal)."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="immune-corpus-repo-"))
        self._git("init", "-q", "-b", "main")
        (self.path / "service").mkdir()
        for name in ("app.py", "test_app.py"):
            shutil.copyfile(DEMO_SERVICE / name, self.path / "service" / name)
        self._git("add", "service")
        self._git("commit", "-q", "-m", f"{DEMO_PACKAGE} {DEMO_RELEASE}")
        self.base = self._git("rev-parse", "HEAD").strip()
        self.commits: dict[str, str] = {}

    def _git(self, *args: str) -> str:
        # Our own files in our own repository (never a reviewer's): git runs as the demo's.
        return subprocess.run(
            ["git", "-C", str(self.path), "-c", "user.name=immune corpus",
             "-c", "user.email=corpus@immune.invalid", "-c", "commit.gpgsign=false", *args],
            check=True, capture_output=True, text=True).stdout

    def commit_for(self, patch_file: Path) -> str:
        if patch_file.name not in self.commits:
            self._git("checkout", "-q", "-B", f"corpus/{patch_file.stem}", self.base)
            self._git("apply", "--whitespace=nowarn", str(patch_file))
            self._git("commit", "-q", "-am", f"{patch_file.stem}")
            self.commits[patch_file.name] = self._git("rev-parse", "HEAD").strip()
            self._git("checkout", "-q", "main")
        return self.commits[patch_file.name]

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _compile_phase(result: CompileResult, patch_file: Path, diff: str) -> runner.PhaseResult:
    outcome = {True: "passed", False: "failed"}.get(result.compiles, "skipped")
    return runner.PhaseResult(
        name="compile", outcome=outcome, output="\n".join(
            f"{name}: {error}" for name, error in result.errors.items()),
        environment=list(result.files), reason=result.reason,
        evidence={**result.as_dict(), "patch": patch_file.name,
                  "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()})


def run_code_patch(pair: Pair, repository: DemoRepository) -> WargameRun:
    """A code patch of the demo service wargamed like a proposal's: compiled in the
    sandbox, the service started from the release and from the patch and attacked by the
    HTTP exploit for its CWE, the service's tests run on the patch when it held."""
    from apps.wargaming.services import _crashed, _store, worker_identity

    assert pair.patch_file is not None
    number = pair.patch_file.stem.split("-")[1]
    run = WargameRun.objects.create(
        kind="http", package=DEMO_PACKAGE, baseline_version=pair.vulnerable,
        patched_version=pair.candidate, exploit=str(pair.exploit.path),
        state=RunState.RUNNING, started_at=timezone.now(), claimed_by=worker_identity(),
        attempts=1, advisories=[f"IMMUNE-DEMO-CWE-{number}"], trigger=CORPUS_TRIGGER)
    t0 = time.monotonic()
    try:
        diff = pair.patch_file.read_text()
        commit = repository.commit_for(pair.patch_file)
        with exported_tree(repository.path, commit) as tree:
            checked = tree_compiles(Path(tree), python_files(diff))
        common = {"exploit": pair.exploit, "repo": str(repository.path),
                  "command": SERVICE_COMMAND, "ready_path": SERVICE_READY_PATH}
        baseline = http_runs.http_phase(commit=repository.base, name="baseline", **common)
        patched = regression = None
        if baseline.outcome == "exploited":
            patched = http_runs.http_phase(commit=commit, name="patched", **common)
            if patched.outcome == "blocked":
                regression = http_runs.regression_phase(repo=str(repository.path),
                                                        commit=commit,
                                                        command=SERVICE_TEST_COMMAND)
        verdict, confidence, reason = runner.verdict_of(baseline, patched, regression)
        phases = [_compile_phase(checked, pair.patch_file, diff),
                  *(p for p in (baseline, patched, regression) if p is not None)]
        isolated = [p.network_isolated for p in phases if p.network_isolated is not None]
        result = runner.RunResult(verdict, confidence, reason, phases,
                                  network_isolated=all(isolated) if isolated else None,
                                  duration_s=round(time.monotonic() - t0, 3),
                                  sandbox=runner.sandbox_record(phases))
    except Exception as exc:  # noqa: BLE001 (any crash ends the run, with its class)
        log.exception("wargaming.corpus_crashed", run=run.pk)
        result = _crashed(exc)
    return _store(run, result)


# --- The export -------------------------------------------------------------------------------

def _row(run: WargameRun) -> dict:
    phases = {p.name: p for p in run.phases.all()}
    exploit = Path(run.exploit).name
    row = {
        "package": run.package, "ecosystem": "PyPI",
        "vulnerable_version": run.baseline_version, "candidate_version": run.patched_version,
        "strategy": "code_patch" if run.kind == "http" else "dependency_upgrade",
        "advisory_ids": list(run.advisories), "exploit": exploit,
        "verdict": run.verdict, "confidence": run.confidence,
        "duration_s": run.duration_s,
        "run_at": (run.finished_at or run.started_at or run.created_at).isoformat(),
        "run_id": run.pk, "reason": run.reason,
        "phases": {name: p.outcome for name, p in phases.items()},
    }
    if run.kind == "http":
        compiled = phases.get("compile")
        evidence = compiled.evidence if compiled is not None else {}
        patch_name = evidence.get("patch") or ""
        path = DEMO_SERVICE / "patches" / patch_name
        row.update({
            "cwe": code_patch_cwe(path) if patch_name else "",
            "patch": patch_name,
            "compiles": evidence.get("compiles"),
            "diff": path.read_text() if patch_name and path.is_file() else "",
        })
    return row


def corpus_rows() -> list[dict]:
    """The newest finished run of every corpus pair, as export rows, oldest pair first."""
    runs = sorted(stored_runs().values(), key=lambda r: r.pk)
    ids = [r.pk for r in runs]
    by_id = {r.pk: r for r in WargameRun.objects.filter(pk__in=ids).prefetch_related("phases")}
    return [_row(by_id[pk]) for pk in ids]


def corpus_export(path: Path, *, command: str = "") -> int:
    """Write the corpus as JSON lines (the first line a ``#`` comment naming the command
    that produced it); returns the number of rows."""
    rows = corpus_rows()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conclusive = sum(r["verdict"] not in {*NO_VERDICT, Verdict.NOT_REPRODUCIBLE}
                     for r in rows)
    header = (f"# immune wargame corpus: produced by `{command or 'python manage.py build_corpus'}`"
              f" at {timezone.now().isoformat(timespec='seconds')}; {len(rows)} runs "
              f"({conclusive} with a label verdict) over "
              f"{len({r['package'] for r in rows})} packages; one JSON object per line")
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(header + "\n")
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
    temporary.replace(path)
    return len(rows)


def read_corpus(path: Path) -> list[dict]:
    """The rows of an exported corpus file (comment lines skipped)."""
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not a JSON object ({exc})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            rows.append(row)
    return rows
