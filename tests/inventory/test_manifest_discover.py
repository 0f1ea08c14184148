"""Discovery of manifests in a working copy, project-level parsing and robustness."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from apps.inventory.manifests import discover, manifest_kind, parse_manifest, parse_project
from apps.inventory.manifests import project as project_module

DATA = Path(__file__).parent / "data"
CDX = '{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []}'


def touch(root: Path, name: str, text: str = "") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    wanted = [
        "requirements.txt", "requirements-dev.txt", "requirements_test.txt",
        "requirements/base.txt", "requirements/sub/extra.txt", "docs/requirements.txt",
        "services/api/requirements/prod.txt",
        "poetry.lock", "Pipfile.lock", "uv.lock", "pyproject.toml", "package-lock.json",
        "frontend/package-lock.json", "frontend/npm-shrinkwrap.json",
    ]
    wanted += ["constraints.txt", "requirements.in"]
    ignored = [
        "notes.txt", "Pipfile", "package.json",
        "frontend/yarn.lock",
        ".git/requirements.txt", "node_modules/left-pad/package-lock.json",
        ".venv/lib/requirements.txt", "venv/pyproject.toml", "__pycache__/requirements.txt",
        ".tox/py311/requirements.txt", "lib/site-packages/pkg/pyproject.toml",
        "sub/.hidden/poetry.lock",
    ]
    for name in wanted + ignored:
        touch(root, name)
    touch(root, "sbom/app.cdx.json", CDX)
    touch(root, "bom.json", CDX)
    touch(root, "reports/sbom.json", '{"pad": "' + "x" * 20000 + '", "bomFormat": "CycloneDX"}')
    touch(root, "spdx/sbom.json", '{"spdxVersion": "SPDX-2.3"}')
    touch(root, "broken/bom.json", "{nope")
    touch(root, "other.json", CDX)  # CycloneDX content but not an SBOM file name
    outside = touch(tmp_path, "outside/requirements.txt", "evil==1\n")
    os.symlink(outside.parent, root / "linked-dir")
    os.symlink(outside, root / "requirements-outside.txt")
    os.symlink(root / "requirements.txt", root / "requirements-alias.txt")
    return root


def test_discover_finds_manifests_sorted_and_skips_noise(tree: Path) -> None:
    found = [p.relative_to(tree).as_posix() for p in discover(tree)]
    assert found == [
        "Pipfile.lock",
        "bom.json",
        "constraints.txt",
        "docs/requirements.txt",
        "frontend/npm-shrinkwrap.json",
        "frontend/package-lock.json",
        "package-lock.json",
        "poetry.lock",
        "pyproject.toml",
        "reports/sbom.json",  # bomFormat found beyond the sniffed head
        "requirements/base.txt",
        "requirements/sub/extra.txt",
        "requirements-alias.txt",  # a symlink inside the tree is fine
        "requirements-dev.txt",
        "requirements.in",
        "requirements.txt",
        "requirements_test.txt",
        "sbom/app.cdx.json",
        "services/api/requirements/prod.txt",
        "uv.lock",
    ]
    assert all(p.is_absolute() == tree.is_absolute() for p in discover(tree))


def test_manifest_kind() -> None:
    assert manifest_kind(Path("requirements.txt")) == "requirements"
    assert manifest_kind(Path("requirements/anything.txt")) == "requirements"
    assert manifest_kind(Path("constraints.txt")) == "constraints"
    assert manifest_kind(Path("a/b/poetry.lock")) == "poetry.lock"
    assert manifest_kind(Path("x.cdx.json")) == "cyclonedx"
    assert manifest_kind(Path("package.json")) is None


def test_parse_project_over_the_test_data() -> None:
    manifests = parse_project(DATA)
    paths = [m.path for m in manifests]
    assert paths == [
        "mixed/requirements.txt",  # its -r files are not repeated on their own
        "npm-v1/package-lock.json",
        "npm-v2/package-lock.json",
        "npm-v3/package-lock.json",
        "pdm3/pdm.lock",
        "pdm3/pyproject.toml",
        "pdm4/pdm.lock",
        "pdm4/pyproject.toml",
        "pep621/pyproject.toml",
        "pip-compile/requirements.txt",
        "pipenv/Pipfile.lock",
        "poetry1/poetry.lock",
        "poetry1/pyproject.toml",
        "poetry2/poetry.lock",
        "poetry2/pyproject.toml",
        "sbom/bom.cdx.json",
        "uv/pyproject.toml",
        "uv/uv.lock",
    ]
    mixed = manifests[0]
    assert {d.manifest_path for d in mixed.dependencies} == {
        "mixed/requirements.txt", "mixed/requirements/base.txt", "mixed/requirements/common.txt",
        "mixed/nested/dev-requirements.txt", "mixed/constraints.txt"}
    # Relative to this root, ../outside.txt is inside the tree (and missing).
    assert ("mixed/requirements.txt", 34, "included file not found: ../outside.txt") in {
        (e.manifest_path, e.line, e.reason) for e in mixed.errors}
    total = sum(len(m.dependencies) for m in manifests)
    assert total > 100


def test_project_with_broken_files_never_raises(tmp_path: Path) -> None:
    touch(tmp_path, "poetry.lock", "[[package]\n")
    touch(tmp_path, "Pipfile.lock", "")
    touch(tmp_path, "package-lock.json", "[")
    touch(tmp_path, "pyproject.toml", "= 1")
    touch(tmp_path, "uv.lock", "version = 1\n[[package]]\nname = 3\n")
    touch(tmp_path, "sbom.cdx.json", json.dumps({"bomFormat": "CycloneDX", "components": 7}))
    (tmp_path / "requirements.txt").write_bytes(b"\x80\x81")
    manifests = parse_project(tmp_path)
    assert len(manifests) == 7
    for manifest in manifests:
        assert manifest.dependencies == []
        assert len(manifest.errors) == 1, manifest
        assert manifest.errors[0].manifest_path == manifest.path


def test_parse_manifest_unknown_missing_and_internal_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path, "Gemfile.lock", "GEM\n")
    unknown = parse_manifest(tmp_path, tmp_path / "Gemfile.lock")
    assert (unknown.kind, unknown.errors[0].reason) == (
        "unknown", "not a recognised dependency manifest")

    missing = parse_manifest(tmp_path, "poetry.lock")
    assert missing.path == "poetry.lock"
    assert missing.errors[0].reason.startswith("cannot read file")

    def explode(root: Path, path: Path):
        raise RuntimeError("boom")

    monkeypatch.setitem(project_module.PARSERS, "uv.lock", explode)
    touch(tmp_path, "uv.lock", "version = 1\n")
    crashed = parse_manifest(tmp_path, tmp_path / "uv.lock")
    assert crashed.dependencies == []
    assert "boom" in crashed.errors[0].reason


def test_parse_project_reports_a_symlinked_requirements_file_once(tree: Path) -> None:
    (tree / "requirements.txt").write_text("django==3.2\n")
    manifests = [m for m in parse_project(tree) if m.kind == "requirements"]
    # Paths are reported resolved, so the alias would show up as requirements.txt.
    assert [m.path for m in manifests].count("requirements.txt") == 1
    assert sum(len(m.dependencies) for m in manifests) == 1
