"""Issue 13, repositories: whatever a repository holds, a scan ends, records why it skipped
what it skipped, and scans the rest (docs/apv.md, "Hostile repositories")."""

from __future__ import annotations

import json
import os
import subprocess
import time
import tracemalloc

import pytest
from rest_framework.test import APIClient

from apps.advisories.services import advisories_import
from apps.core.errors import ApplicationError
from apps.inventory.errors import ScanFailed
from apps.inventory.models import Dependency, Project
from apps.inventory.services import project_add, project_scan
from apps.inventory.tasks import scan_project
from apps.reviews.models import APV
from tests.factories import GIT_ENV, commit_files, git, make_repo


def errors_by_path(project: Project) -> dict[str, str]:
    return {e["manifest"]: e["reason"] for e in project.last_scan_errors}


def names(project: Project) -> set[str]:
    return set(Dependency.objects.filter(project=project, present=True)
               .values_list("normalised_name", flat=True))


def commit_links(repo, links: dict[str, str], message="links") -> None:
    for name, target in links.items():
        link = repo / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def git_in(repo, *args: str | bytes, stdin: str = "") -> str:
    """git with input on stdin and byte arguments (names that are not UTF-8)."""
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin.encode(), check=True,
                          capture_output=True, env={**os.environ, **GIT_ENV}).stdout.decode()


def commit_entry(repo, name: bytes, text: str = "evil==1.0\n") -> None:
    """Commit a file under a name the test's file system need not hold (too long, not
    UTF-8): through git's index, never written to disk."""
    blob = git_in(repo, "hash-object", "-w", "--stdin", stdin=text).strip()
    git_in(repo, "update-index", "--add", "--cacheinfo", b"100644," + blob.encode() + b"," + name)
    git(repo, "commit", "-q", "-m", "odd name")


@pytest.fixture
def lead_api(lead):
    client = APIClient()
    client.force_authenticate(lead)
    return client


# --- Symlinks and other tree entries ---------------------------------------------------------

def test_an_absolute_symlink_is_skipped_and_recorded_and_the_rest_is_scanned(tmp_path, db):
    """Reported: one absolute symlink made the export raise tarfile.AbsoluteLinkError."""
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    commit_links(repo, {"requirements-dev.txt": "/etc/passwd", "docs/hosts": "/etc/hosts"})
    project = project_add(name="svc", path=str(repo))
    result = project_scan(project=project)
    project.refresh_from_db()
    assert names(project) == {"pyyaml"}
    assert result.status == project.last_scan_status == "partial"
    errors = errors_by_path(project)
    assert errors["requirements-dev.txt"] == "not scanned: absolute symlink (to /etc/passwd)"
    assert errors["docs/hosts"] == "not scanned: absolute symlink (to /etc/hosts)"
    assert {e["stage"] for e in project.last_scan_errors} == {"tree"}
    assert result.errors == project.last_scan_errors


def test_links_leaving_the_tree_are_skipped_links_inside_it_are_followed(tmp_path, db):
    """Choice (docs/apv.md): a relative link that stays in the tree is kept, so a project's
    ``requirements.txt -> requirements/base.txt`` is scanned like the file it names."""
    (tmp_path / "outside.txt").write_text("secret==1.0\n")
    repo = make_repo(tmp_path / "svc", {"requirements/base.txt": "Jinja2==2.10\n"})
    commit_links(repo, {
        "requirements.txt": "requirements/base.txt",          # inside: followed
        "requirements/dev.txt": "../../outside.txt",          # leaves the tree
        "deep/a/b/requirements.txt": "../../../../outside.txt",
    })
    project = project_add(name="svc", path=str(repo))
    project_scan(project=project)
    project.refresh_from_db()
    assert names(project) == {"jinja2"}
    errors = errors_by_path(project)
    assert errors == {
        "requirements/dev.txt":
            "not scanned: symlink leaves the repository (to ../../outside.txt)",
        "deep/a/b/requirements.txt":
            "not scanned: symlink leaves the repository (to ../../../../outside.txt)",
    }


def test_names_the_file_system_cannot_hold_are_skipped_and_recorded(tmp_path, db):
    """A 300-byte file name (ENAMETOOLONG on extraction) and a name that is not UTF-8 (it
    could not be stored or shown): both committed through git's index, both skipped."""
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    commit_entry(repo, b"x" * 300 + b".txt")
    commit_entry(repo, b"requirements-\xff.txt")
    project = project_add(name="svc", path=str(repo))
    project_scan(project=project)
    project.refresh_from_db()
    assert names(project) == {"pyyaml"}
    errors = errors_by_path(project)
    assert errors["requirements-\\xff.txt"] == "not scanned: file name is not UTF-8"
    (long_name,) = [path for path in errors if path.startswith("xxx")]
    assert errors[long_name].startswith("not scanned: file name longer than 255 bytes")
    assert project.last_scan_status == "partial"


# --- Whole scans that cannot happen ----------------------------------------------------------

def test_a_tree_git_refuses_to_export_fails_the_scan_and_is_recorded(tmp_path, db, lead_api):
    """``git mktree`` accepts an entry named ``..``; ``git archive`` then refuses the tree and
    writes nothing (tarfile raised ReadError before). Nothing can be scanned: 422 in the
    error format, the reason kept on the project, dependencies and APVs untouched."""
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_add(name="svc", path=str(repo))
    project_scan(project=project)
    blob = git_in(repo, "hash-object", "-w", "--stdin", stdin="x\n").strip()
    inner = git_in(repo, "mktree", stdin=f"100644 blob {blob}\tpasswd\n").strip()
    tree = git_in(repo, "mktree", stdin=f"040000 tree {inner}\t..\n").strip()
    commit = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "dots").strip()
    git(repo, "update-ref", "refs/heads/main", commit)

    response = lead_api.post(f"/api/v1/projects/{project.pk}/scan/")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "scan_failed" and "invalid path '../passwd'" in error["message"]
    assert error["details"]["errors"][0]["stage"] == "repository"
    project.refresh_from_db()
    assert project.last_scan_status == "failed" and project.last_scan_attempted_at
    assert "invalid path '../passwd'" in project.last_scan_errors[0]["reason"]
    assert names(project) == {"pyyaml"}  # the last good scan's dependencies stay


def test_a_working_copy_that_went_away_fails_recorded_by_the_task_too(tmp_path, db):
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_add(name="svc", path=str(repo))
    git(repo, "branch", "-m", "main", "trunk")
    outcome = scan_project.delay(project.pk).get()
    assert outcome["failed"].startswith("Cannot read svc: branch 'main' does not exist")
    project.refresh_from_db()
    assert project.last_scan_status == "failed" and project.last_scanned_at is None
    with pytest.raises(ScanFailed):
        project_scan(project=project)


def test_a_tree_over_the_entry_cap_is_not_scanned(tmp_path, db, settings):
    """A partial tree would look like deleted manifests (and resolve their APVs): refused."""
    settings.SCAN_MAX_TREE_ENTRIES = 3
    repo = make_repo(tmp_path / "svc", {f"f{i}.txt": "x\n" for i in range(5)})
    project = project_add(name="svc", path=str(repo))
    with pytest.raises(ApplicationError, match=r"more than 3 entries \(SCAN_MAX_TREE_ENTRIES\)"):
        project_scan(project=project)
    project.refresh_from_db()
    assert project.last_scan_status == "failed"


# --- Caps ------------------------------------------------------------------------------------

def big_requirements(size: int) -> str:
    """Pins like the reported file: 30.8 MB held 1.7 M of them (about 18 bytes each)."""
    line = "pkg{:07d}==1.0.1\n"
    return "".join(line.format(i) for i in range(size // len(line.format(0)) + 1))


def test_a_30_mb_requirements_file_is_refused_unread_and_the_rest_scanned(tmp_path, db,
                                                                         lead_api):
    """Reported: 30.8 MB, 1.7 M pins accepted in 483 s, 3.26 GB, 1.7 M rows. Now refused from
    its size: the scan's parse allocates well under 1 MB (tracemalloc), so the file was never
    read into memory; the other manifest is scanned and the API answers 200 with the error."""
    text = big_requirements(30_800_000)
    assert len(text) >= 30_800_000 and text.count("\n") > 1_700_000
    repo = make_repo(tmp_path / "svc", {"requirements.txt": text,
                                        "requirements-dev.txt": "PyYAML==5.3.1\n"})
    project = project_add(name="svc", path=str(repo))

    from apps.inventory.git import exported_tree
    from apps.inventory.manifests import parse_project
    from apps.inventory.services import scan_limits

    with exported_tree(repo, "HEAD", max_file_bytes=5 * 1024 * 1024) as tree:
        # git never inflated it: a sparse placeholder of its size, no block written
        assert (tree / "requirements.txt").stat().st_size == len(text)
        assert (tree / "requirements.txt").stat().st_blocks == 0
        tracemalloc.start()
        started = time.perf_counter()
        manifests = parse_project(tree, scan_limits())
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"\nparse of the 30.8 MB file's project: {elapsed * 1000:.1f} ms, "
          f"peak {peak / 1024:.0f} KiB")
    assert peak < 1024 * 1024
    assert [len(m.dependencies) for m in manifests] == [1, 0]

    started = time.perf_counter()
    response = lead_api.post(f"/api/v1/projects/{project.pk}/scan/")
    print(f"POST …/scan/ with the 30.8 MB file: {time.perf_counter() - started:.2f} s")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "partial" and body["dependencies"] == 1
    (error,) = body["errors"]
    assert error["manifest"] == "requirements.txt"
    assert error["reason"] == (f"cannot read file: {len(text):,} bytes, over the 5,242,880-byte "
                               "cap (SCAN_MAX_MANIFEST_BYTES); not read")
    assert Dependency.objects.filter(project=project).count() == 1


def test_a_manifest_over_the_dependency_cap_is_skipped_without_being_kept_whole(
        tmp_path, db, settings):
    """Under the size cap, 4.9 MB still holds 270,000 pins: the parse stops at the 20,001st
    (SCAN_MAX_DEPENDENCIES) so memory stays bounded by the cap, not by the file."""
    text = big_requirements(4_900_000)
    repo = make_repo(tmp_path / "svc", {"requirements.txt": text,
                                        "pyproject.toml": '[project]\nname = "x"\n'
                                                          'dependencies = ["Jinja2==2.10"]\n'})
    project = project_add(name="svc", path=str(repo))

    from apps.inventory.git import exported_tree
    from apps.inventory.manifests import parse_project
    from apps.inventory.services import scan_limits

    with exported_tree(repo, "HEAD") as tree:
        tracemalloc.start()
        (pins, _) = parse_project(tree, scan_limits())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert pins.path == "pyproject.toml" and len(pins.dependencies) == 1
    print(f"\nparse of 270,000 pins stopped at the cap: peak {peak / 1024 / 1024:.1f} MiB")
    assert peak < 64 * 1024 * 1024  # 4.9 MB of text and 20,000 parsed pins, not 270,000

    result = project_scan(project=project)
    assert names(project) == {"jinja2"}
    (error,) = result.errors
    assert error["manifest"] == "requirements.txt"
    assert error["reason"] == ("more than 20,000 dependencies, over the cap of 20,000 per "
                               "manifest (SCAN_MAX_DEPENDENCIES); manifest skipped")

    settings.SCAN_MAX_DEPENDENCIES = 1  # the JSON/TOML parsers are capped after parsing
    commit_files(repo, {"requirements.txt": "PyYAML==5.3.1\n",
                        "pyproject.toml": '[project]\nname = "x"\n'
                                          'dependencies = ["Jinja2==2.10", "idna==2.0"]\n'})
    result = project_scan(project=project)
    (error,) = result.errors
    assert error["manifest"] == "pyproject.toml"
    assert error["reason"] == ("2 dependencies, over the cap of 1 per manifest "
                               "(SCAN_MAX_DEPENDENCIES); manifest skipped")
    assert "pyyaml" in names(project)


def test_project_caps_on_dependencies_and_manifests(tmp_path, db, settings):
    repo = make_repo(tmp_path / "svc", {
        "a/requirements.txt": "PyYAML==5.3.1\nidna==2.0\n",
        "b/requirements.txt": "Jinja2==2.10\nurllib3==1.24.1\n",
        "c/requirements.txt": "Django==3.2\n",
    })
    project = project_add(name="svc", path=str(repo))
    settings.SCAN_MAX_PROJECT_DEPENDENCIES = 3
    result = project_scan(project=project)
    assert names(project) == {"pyyaml", "idna", "django"}
    assert errors_by_path(project) == {"b/requirements.txt": (
        "2 more dependencies would pass the project's cap of 3 (2 already found; "
        "SCAN_MAX_PROJECT_DEPENDENCIES); manifest skipped")}
    assert result.status == "partial"

    settings.SCAN_MAX_PROJECT_DEPENDENCIES = 100
    settings.SCAN_MAX_MANIFESTS = 1
    project_scan(project=project)
    assert errors_by_path(project) == dict.fromkeys(
        ("b/requirements.txt", "c/requirements.txt"),
        "more than 1 manifests in the project (SCAN_MAX_MANIFESTS); not read")


def test_a_manifest_that_becomes_unreadable_keeps_its_dependencies_and_apvs(tmp_path, db,
                                                                           settings):
    """Skipped is not removed: an oversize (or broken) manifest must not resolve the APVs of
    the pins it held last time, or one hostile commit would close every finding."""
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "PYSEC-2021-0001.json").write_text(json.dumps({
        "id": "PYSEC-2021-0001", "modified": "2024-01-01T00:00:00Z", "summary": "flaw",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml"},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}]}))
    advisories_import(sources=[str(feed)], source_name="test")
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    project = project_add(name="svc", path=str(repo))
    project_scan(project=project)
    assert APV.objects.get().status == "open"
    settings.SCAN_MAX_MANIFEST_BYTES = 100
    commit_files(repo, {"requirements.txt": "PyYAML==5.3.1\n" + "#" * 200 + "\n"})
    rescan = project_scan(project=project)  # its only file excluded from the archive
    assert rescan.errors[0]["reason"].startswith("cannot read file: 215 bytes, over the 100-")
    assert rescan.apvs.resolved == [] and APV.objects.get().status == "open"
    assert names(project) == {"pyyaml"}
    settings.SCAN_MAX_MANIFEST_BYTES = 5 * 1024 * 1024
    commit_files(repo, {"requirements.txt": ""}, message="pins really removed")
    project_scan(project=project)
    assert APV.objects.get().status == "resolved" and names(project) == set()


# --- Malformed manifests ---------------------------------------------------------------------

def test_malformed_manifests_give_one_error_each_and_never_a_crash(tmp_path, db):
    """Binary garbage, NUL bytes, invalid and absurdly nested TOML/JSON, enormous lines, a
    long run of spaces (quadratic in pip's comment regex: 32,000 took 18 s), and names
    PostgreSQL cannot store (NUL, a lone surrogate from a JSON escape)."""
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    odd = {
        "a/requirements.txt": "\x00\x01\x02 garbage\x00\nidna==2.0\n",
        "b/poetry.lock": "[[package]\nname = ",
        "c/package-lock.json": '{"lockfileVersion": 3, "packages": ',
        "d/Pipfile.lock": "[" * 100_000 + "]" * 100_000,
        "e/uv.lock": "a = " + "[" * 100_000 + "]" * 100_000 + "\n",
        "f/requirements.txt": "Jinja2==2.10 " + "x" * 200_000 + "\nurllib3==1.24.1\n",
        "g/requirements.txt": "a" + " " * 200_000 + "b\nDjango==3.2\n",
        "h/package-lock.json": json.dumps({"lockfileVersion": 3, "packages": {
            "": {"name": "app"},
            "node_modules/a\u0000b": {"version": "1.0.0"},
            "node_modules/\ud800x": {"version": "1.0.0"},
            "node_modules/left-pad": {"version": "1.3.0"}}}, ensure_ascii=True),
    }
    for path, text in odd.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text, errors="surrogatepass")
    (repo / "i").mkdir()
    (repo / "i" / "requirements.txt").write_bytes(bytes(range(256)) * 64)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hostile")
    project = project_add(name="svc", path=str(repo))
    result = project_scan(project=project)
    project.refresh_from_db()
    assert result.status == "partial"
    assert names(project) == {"pyyaml", "idna", "urllib3", "django", "left-pad"}
    reasons: dict[str, list[str]] = {}
    for error in project.last_scan_errors:
        reasons.setdefault(error["manifest"], []).append(error["reason"])
    assert set(reasons) == {f"{d}/{n}" for d, n in (
        ("a", "requirements.txt"), ("b", "poetry.lock"), ("c", "package-lock.json"),
        ("d", "Pipfile.lock"), ("e", "uv.lock"), ("f", "requirements.txt"),
        ("g", "requirements.txt"), ("h", "package-lock.json"), ("i", "requirements.txt"))}
    assert reasons["b/poetry.lock"][0].startswith("invalid TOML")
    assert reasons["c/package-lock.json"][0].startswith("invalid JSON")
    assert reasons["d/Pipfile.lock"] == ["invalid JSON: nested too deep"]
    assert reasons["e/uv.lock"] == ["invalid TOML: nested too deep"]
    assert reasons["f/requirements.txt"] == ["line of 200,013 characters, over 100,000; skipped"]
    assert reasons["g/requirements.txt"][0].startswith("line of 200,002 characters")
    assert reasons["i/requirements.txt"][0].startswith("not UTF-8 text (byte 128")
    assert sorted(reasons["h/package-lock.json"]) == [
        "dependency skipped: name contains a NUL byte or invalid text"] * 2
    assert "\x00" not in json.dumps(project.last_scan_errors)


# --- Shown in the admin ----------------------------------------------------------------------

def test_the_admin_lists_the_last_scan_and_shows_its_errors_escaped(tmp_path, db, admin_client):
    repo = make_repo(tmp_path / "svc", {"requirements.txt": "PyYAML==5.3.1\n"})
    commit_links(repo, {"<b>x</b>.txt": "/etc/passwd"})
    project = project_add(name="svc", path=str(repo))
    project_scan(project=project)
    listing = admin_client.get("/admin/inventory/project/").content.decode()
    assert "partial (see errors), 1 error" in listing
    page = admin_client.get(f"/admin/inventory/project/{project.pk}/change/").content.decode()
    assert "<code>&lt;b&gt;x&lt;/b&gt;.txt</code> not scanned: absolute symlink" in page
    assert "<b>x</b>" not in page
