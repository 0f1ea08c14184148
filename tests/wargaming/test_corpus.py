"""The wargame corpus (apps/wargaming/corpus.py): which release pairs, a real build of two
pairs with the sandbox and content-keyed environments (rsa, a small pure-Python wheel),
one of the demo service's code patches, resuming, and the JSON-lines export.

PyPI's answer is the outside world here: a local server plays a recorded PEP 691 response.
The full corpus is never built in a test (``manage.py build_corpus``, docs/ml.md)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.wargaming import corpus
from apps.wargaming.compile_check import python_files, tree_compiles
from apps.wargaming.models import WargameRun

FIXTURES = Path(__file__).parent / "fixtures"
RSA_RELEASES = ["3.4.2", "4.0", "4.1", "4.2", "4.3"]


@pytest.fixture
def recorded_index():
    """A package index on loopback answering PEP 691 JSON for ``rsa`` from a recording."""
    body = (FIXTURES / "pypi-simple-rsa.json").read_bytes()
    seen = []

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append((self.path, self.headers.get("Accept", "")))
            if self.path != "/simple/rsa/":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", corpus.JSON_ACCEPT)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", seen
    finally:
        server.shutdown()
        server.server_close()


def test_index_releases_are_final_and_not_yanked(recorded_index):
    url, seen = recorded_index
    releases = corpus.index_releases("RSA", index_url=url)
    assert seen == [("/simple/rsa/", corpus.JSON_ACCEPT)]  # the normalised name, PEP 691
    recorded = json.loads((FIXTURES / "pypi-simple-rsa.json").read_text())
    assert releases == sorted(releases, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert {"3.4.2", "4.0", "4.1", "4.9"} <= set(releases)
    # 4.4's every file is yanked (PEP 592): not a candidate; pre-releases are not either.
    assert "4.4" not in releases
    assert all(f["yanked"] for f in recorded["files"]
               if corpus._file_version(f["filename"]) == "4.4")
    assert "4.1.1" not in releases and "4.2" in releases  # 4.1.1's one file is yanked
    assert not any(c in v for v in releases for c in ("a", "b", "rc", "dev"))
    with pytest.raises(ValueError, match="http"):
        corpus.index_releases("rsa", index_url="file:///etc")


def test_later_and_earlier_releases_are_capped_around_the_vulnerable_one():
    releases = [f"1.{n}" for n in range(30)]
    assert corpus.later_releases(releases, "1.9", None) == [f"1.{n}" for n in range(10, 30)]
    capped = corpus.later_releases(releases, "1.9", 6)
    # the first half in order (where the fix is), the rest spread, the newest included
    assert capped[:3] == ["1.10", "1.11", "1.12"] and capped[-1] == "1.29" and len(capped) == 6
    assert corpus.earlier_releases(releases, "1.9", 3) == ["1.8", "1.7", "1.6"]
    assert corpus.earlier_releases(releases, "1.9", 0) == []


def test_pairs_cover_every_package_poc_and_the_code_patches():
    listed = {}

    def releases(package):
        listed[package] = True
        return ["0.0.1", "9999.0"]

    pairs = corpus.corpus_pairs(releases=releases, max_per_package=1, max_earlier=1)
    packages = {p.package for p in pairs}
    assert {"babel", "rsa", "django", "pyyaml", corpus.DEMO_PACKAGE} <= packages
    assert len(packages) >= 12
    http_pairs = [p for p in pairs if p.kind == "http"]
    assert len(http_pairs) == 14 and {p.exploit.cwe for p in http_pairs} == {
        "CWE-89", "CWE-22", "CWE-78", "CWE-79", "CWE-601", "CWE-611", "CWE-918"}
    assert "1.0.0+cwe89.effective" in {p.candidate for p in http_pairs}
    jinja = [p for p in pairs if p.package == "jinja2"]
    assert {p.exploit.name for p in jinja} == {"jinja2_pysec_2019_217.py",
                                                "jinja2_pysec_2021_66.py"}
    # forward: the vulnerable release against a later one; backward: an earlier one against it
    forward = next(p for p in pairs if p.package == "rsa" and p.vulnerable == "4.0")
    backward = next(p for p in pairs if p.package == "rsa" and p.candidate == "4.0")
    assert (forward.candidate, backward.vulnerable) == ("9999.0", "0.0.1")


def test_compile_check_runs_in_the_sandbox(tmp_path):
    (tmp_path / "ok.py").write_text("x = 1\n")
    (tmp_path / "bad.py").write_text("def broken(:\n    pass\n")
    good = tree_compiles(tmp_path, ["ok.py"])
    assert good.compiles is True and good.files == ("ok.py",)
    bad = tree_compiles(tmp_path, ["ok.py", "bad.py"])
    assert bad.compiles is False and "SyntaxError" in bad.errors["bad.py"]
    assert tree_compiles(tmp_path, ["missing.py"]).compiles is None
    assert python_files("+++ b/service/app.py\n+++ /dev/null\n+++ b/README.md\n") == [
        "service/app.py"]


@pytest.mark.django_db
def test_a_small_build_runs_for_real_resumes_and_exports(tmp_path):
    out = tmp_path / "wargames.jsonl"
    report = corpus.corpus_build(packages=["rsa"], max_per_package=1, max_earlier=1,
                                 releases=lambda _package: RSA_RELEASES, export_to=out,
                                 command="python manage.py build_corpus --packages rsa")
    assert (report.planned, report.ran, report.skipped) == (2, 2, 0)
    runs = {(r.baseline_version, r.patched_version): r
            for r in WargameRun.objects.filter(trigger=corpus.CORPUS_TRIGGER)}
    # 4.0 → 4.1 fixes CVE-2020-13757; 3.4.2 → 4.0 upgrades to a release that is still open
    assert runs[("4.0", "4.1")].verdict == "patch_effective", runs[("4.0", "4.1")].reason
    assert runs[("3.4.2", "4.0")].verdict == "patch_ineffective", runs[("3.4.2", "4.0")].reason
    assert all("PYSEC-2020-99" in r.advisories for r in runs.values())

    again = corpus.corpus_build(packages=["rsa"], max_per_package=1, max_earlier=1,
                                releases=lambda _package: RSA_RELEASES, export_to=out)
    assert (again.ran, again.skipped) == (0, 2)
    assert WargameRun.objects.filter(trigger=corpus.CORPUS_TRIGGER).count() == 2

    lines = out.read_text().splitlines()
    assert lines[0].startswith("# immune wargame corpus: produced by `python manage.py "
                               "build_corpus`")  # the second build wrote the file
    rows = corpus.read_corpus(out)
    assert len(rows) == 2 and len(lines) == 3
    required = {"package", "vulnerable_version", "candidate_version", "strategy",
                "advisory_ids", "exploit", "verdict", "duration_s", "run_at"}
    for row in rows:
        assert required <= set(row)
        run = WargameRun.objects.get(pk=row["run_id"])
        assert (row["package"], row["vulnerable_version"], row["candidate_version"],
                row["verdict"], row["exploit"]) == (
            "rsa", run.baseline_version, run.patched_version, run.verdict,
            "rsa_pysec_2020_99.py")
        assert row["strategy"] == "dependency_upgrade" and row["duration_s"] > 0


@pytest.mark.django_db
def test_a_code_patch_of_the_demo_service_is_compiled_and_attacked():
    pair = next(p for p in corpus.corpus_pairs(packages=[corpus.DEMO_PACKAGE])
                if p.patch_file.name == "cwe-89-effective.diff")
    repository = corpus.DemoRepository()
    try:
        run = corpus.run_code_patch(pair, repository)
    finally:
        repository.close()
    phases = {p.name: p for p in run.phases.all()}
    assert run.verdict == "patch_effective", run.reason
    assert phases["compile"].outcome == "passed" and phases["compile"].evidence["compiles"]
    assert phases["regression"].outcome == "passed"
    row = corpus.corpus_rows()[0]
    assert (row["strategy"], row["cwe"], row["compiles"], row["patch"]) == (
        "code_patch", "CWE-89", True, "cwe-89-effective.diff")
    assert row["advisory_ids"] == ["IMMUNE-DEMO-CWE-89"] and "+++ b/service/app.py" in row["diff"]


def test_build_corpus_command_rejects_a_negative_cap():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="0 or more"):
        call_command("build_corpus", "--max-per-package", "-1")
