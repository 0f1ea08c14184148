"""Python lock files: poetry.lock (1.x and 2.x), uv.lock and Pipfile.lock."""

from __future__ import annotations

import shutil
from pathlib import Path

from apps.inventory.manifests import ParsedDependency, parse_manifest

DATA = Path(__file__).parent / "data"


def table(deps: list[ParsedDependency]) -> dict[str, tuple]:
    return {d.name: (d.version, d.line, d.direct) for d in deps}


# --- poetry.lock ---------------------------------------------------------------


def test_poetry_1_lock_with_legacy_metadata_files() -> None:
    root = DATA / "poetry1"
    manifest = parse_manifest(root, root / "poetry.lock")
    assert (manifest.path, manifest.kind, manifest.errors) == ("poetry.lock", "poetry.lock", [])
    assert table(manifest.dependencies) == {
        "asgiref": ("3.3.4", 2, False),
        "certifi": ("2020.12.5", 13, False),
        "django": ("3.2", 21, True),  # pyproject says "Django"
        "mylib": ("1.0.0", 38, True),  # git source, still versioned
        "pluggy": ("0.13.1", 53, False),
        "pysocks": ("1.7.1", 64, False),
        "pytest": ("6.2.4", 72, True),  # [tool.poetry.dev-dependencies]
        "pytz": ("2021.1", 86, False),
        "pywin32": ("305", 94, True),
        "pyyaml": ("5.3.1", 102, True),  # pyproject says "PyYAML"
        "requests": ("2.25.1", 110, True),
        "sqlparse": ("0.4.1", 127, False),
        "urllib3": ("1.24.1", 135, False),
    }
    deps = {d.name: d for d in manifest.dependencies}
    assert deps["pyyaml"].normalised_name == "pyyaml"
    assert deps["django"].specifier == "==3.2"
    # Poetry < 1.2 keeps hashes in [metadata.files].
    assert len(deps["pysocks"].hashes) == 3
    assert all(h.startswith("sha256:") for h in deps["django"].hashes)
    assert deps["mylib"].hashes == ()
    assert all(d.ecosystem == "PyPI" and d.manifest_path == "poetry.lock"
               for d in manifest.dependencies)


def test_poetry_2_lock_with_pep621_pyproject() -> None:
    root = DATA / "poetry2"
    manifest = parse_manifest(root, root / "poetry.lock")
    assert manifest.errors == []
    assert table(manifest.dependencies) == {
        "asgiref": ("3.8.1", 4, False),
        "colorama": ("0.4.6", 19, False),
        "django": ("5.1.4", 32, True),  # project.dependencies
        "iniconfig": ("2.0.0", 53, False),
        "jinja2": ("3.1.4", 65, True),
        "markupsafe": ("3.0.2", 83, False),
        "pytest": ("8.3.4", 95, True),  # [tool.poetry.group.dev.dependencies]
        "pyyaml": ("6.0.2", 114, True),  # project.optional-dependencies
        "sqlparse": ("0.5.3", 127, False),
        "tzdata": ("2024.2", 143, False),
    }
    deps = {d.name: d for d in manifest.dependencies}
    assert deps["tzdata"].marker == 'sys_platform == "win32"'
    assert deps["colorama"].marker == ""  # per-group marker table: no single marker
    assert len(deps["django"].hashes) == 2


def test_poetry_lock_without_pyproject_reports_everything_direct(tmp_path: Path) -> None:
    shutil.copy(DATA / "poetry2" / "poetry.lock", tmp_path / "poetry.lock")
    deps = parse_manifest(tmp_path, tmp_path / "poetry.lock").dependencies
    assert len(deps) == 10
    assert all(d.direct for d in deps)


# --- uv.lock ------------------------------------------------------------------


def test_uv_lock_skips_project_and_finds_direct_dependencies() -> None:
    root = DATA / "uv"
    manifest = parse_manifest(root, root / "uv.lock")
    assert (manifest.kind, manifest.errors) == ("uv.lock", [])
    assert table(manifest.dependencies) == {
        "anyio": ("4.8.0", 6, True),
        "asgiref": ("3.8.1", 19, False),
        "colorama": ("0.4.6", 28, False),
        "django": ("5.1.5", 37, True),
        "idna": ("3.10", 51, False),
        "iniconfig": ("2.0.0", 60, False),
        "mylib": ("1.0.0", 69, True),
        "packaging": ("24.2", 74, False),
        "pluggy": ("1.5.0", 83, False),
        "pytest": ("8.3.4", 92, True),  # dev-dependencies of the root
        "pyyaml": ("6.0.2", 107, True),  # optional-dependencies of the root
        "sniffio": ("1.3.1", 113, False),
        "sqlparse": ("0.5.3", 122, False),
        "tzdata": ("2024.2", 131, False),
    }
    deps = {d.name: d for d in manifest.dependencies}
    assert "uv-app" not in deps
    assert len(deps["anyio"].hashes) == 2  # sdist + wheel
    assert deps["pyyaml"].hashes and len(deps["pyyaml"].hashes) == 1
    assert deps["mylib"].hashes == ()


def test_uv_lock_virtual_root(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text(
        'version = 1\nrevision = 1\nrequires-python = ">=3.12"\n\n'
        '[[package]]\nname = "my-workspace"\nversion = "0.0.0"\n'
        'source = { virtual = "." }\ndependencies = [{ name = "Jinja2" }]\n\n'
        '[[package]]\nname = "jinja2"\nversion = "2.10"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
        'dependencies = [\n    { name = "markupsafe" },\n]\n\n'
        '[[package]]\nname = "markupsafe"\nversion = "1.1.1"\n'
        'source = { registry = "https://pypi.org/simple" }\n')
    deps = parse_manifest(tmp_path, tmp_path / "uv.lock").dependencies
    assert [(d.name, d.version, d.line, d.direct) for d in deps] == [
        ("jinja2", "2.10", 12, True), ("markupsafe", "1.1.1", 20, False)]


# --- Pipfile.lock ---------------------------------------------------------------


def test_pipfile_lock_sections_and_direct_from_pipfile() -> None:
    root = DATA / "pipenv"
    manifest = parse_manifest(root, root / "Pipfile.lock")
    assert (manifest.kind, manifest.errors) == ("Pipfile.lock", [])
    rows = [(d.name, d.version, d.line, d.direct) for d in manifest.dependencies]
    assert rows == [
        ("asgiref", "3.3.4", 19, False),
        ("django", "3.2", 27, True),
        ("jinja2", "2.10", 35, True),  # Pipfile says "Jinja2"
        ("markupsafe", "1.1.1", 42, False),
        ("pyyaml", "5.3.1", 49, True),
        ("requests", "2.25.1", 56, True),
        ("urllib3", "1.24.1", 66, False),
        # develop section: same name again, found at its own line.
        ("pluggy", "0.13.1", 76, False),
        ("pytest", "6.2.4", 83, True),
        ("urllib3", "1.26.5", 90, False),
    ]
    deps = {(d.name, d.line): d for d in manifest.dependencies}
    assert deps["requests", 56].extras == ("socks",)
    assert deps["asgiref", 19].marker == "python_version >= '3.6'"
    assert deps["django", 27].specifier == "==3.2"
    assert len(deps["urllib3", 66].hashes) == 2


def test_pipfile_lock_without_pipfile_is_all_direct(tmp_path: Path) -> None:
    shutil.copy(DATA / "pipenv" / "Pipfile.lock", tmp_path / "Pipfile.lock")
    deps = parse_manifest(tmp_path, tmp_path / "Pipfile.lock").dependencies
    assert len(deps) == 10 and all(d.direct for d in deps)


def test_pipfile_lock_vcs_entry_is_unpinned(tmp_path: Path) -> None:
    (tmp_path / "Pipfile.lock").write_text(
        '{"_meta": {}, "default": {"mylib": {"git": "https://github.com/acme/mylib.git",'
        ' "ref": "3f2b9c1d"}, "bad": []}}')
    manifest = parse_manifest(tmp_path, tmp_path / "Pipfile.lock")
    assert [(d.name, d.version, d.specifier, d.line) for d in manifest.dependencies] == [
        ("mylib", None, "", 1)]
    assert [(e.line, e.reason) for e in manifest.errors] == [
        (1, "entry for bad is not an object")]


# --- bad input -----------------------------------------------------------------


def test_invalid_toml_and_json_give_one_error_each(tmp_path: Path) -> None:
    (tmp_path / "poetry.lock").write_text('[[package]]\nname = "x\n')
    (tmp_path / "uv.lock").write_text("version = \n")
    (tmp_path / "Pipfile.lock").write_text('{"default": {')
    for name, prefix in (("poetry.lock", "invalid TOML"), ("uv.lock", "invalid TOML"),
                         ("Pipfile.lock", "invalid JSON")):
        manifest = parse_manifest(tmp_path, tmp_path / name)
        assert manifest.dependencies == []
        assert len(manifest.errors) == 1
        error = manifest.errors[0]
        assert error.manifest_path == name
        assert error.reason.startswith(prefix), error.reason
        assert "line" in error.reason  # the parser's own message, with its position


def test_wrong_shapes_do_not_raise(tmp_path: Path) -> None:
    (tmp_path / "poetry.lock").write_text('package = "nope"\n')
    (tmp_path / "Pipfile.lock").write_text("[1, 2]")
    poetry = parse_manifest(tmp_path, tmp_path / "poetry.lock")
    assert poetry.dependencies == [] and len(poetry.errors) == 1
    pipfile = parse_manifest(tmp_path, tmp_path / "Pipfile.lock")
    assert pipfile.dependencies == [] and pipfile.errors[0].reason == "not a JSON object"
