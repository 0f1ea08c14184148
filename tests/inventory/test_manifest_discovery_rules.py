"""Renovate/Dependabot file names, constraints files, skipped trees and include/exclude globs."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.inventory.manifests import discover, parse_manifest, parse_project
from apps.inventory.manifests.globs import InvalidPattern, clean_patterns, path_matches, selected

# A test_requirements.txt as projects write it (shape of the one in issue 14: pins, comments,
# hashes and markers), which discovery used to miss because its name does not start with
# "requirements".
TEST_REQUIREMENTS = """\
# Test dependencies, pinned by pip-compile --generate-hashes
-r requirements.txt
coverage[toml]==7.2.7 \\
    --hash=sha256:06a9a2be0b5b576c3f18f1a241f0473575c4a26021b52b2a85263a00f034d51f
pytest==7.4.0
pytest-django==4.5.2  # via -r test_requirements.in
freezegun==1.2.2
responses==0.23.1
PyYAML==5.3.1 ; python_version >= "3.7"
"""


def write(root: Path, name: str, text: str = "") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rel(root: Path, paths) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_requirement_file_names_renovate_and_dependabot_recognise(tmp_path: Path) -> None:
    for name in ["test_requirements.txt", "requirements-dev.txt", "dev-requirements.txt",
                 "ci/Requirements.txt", "requirements.pip", "tools/dev.pip",
                 "requirements.in", "requirements/base.in", "requirements/prod.txt",
                 "constraints.txt", "constraints-py311.txt"]:
        write(tmp_path, name, "six==1.16.0\n")
    write(tmp_path, "deps/dev.in", "# pip-tools input\n-c ../constraints.txt\ndjango>=4.2\n")
    for name, text in [("MANIFEST.in", "include README.md\nrecursive-include src *.py\n"),
                       ("Makefile.in", "all:\n\tcc -o x x.c\n"), ("config.h.in", "#undef X\n"),
                       ("docs/notes.in", "Some prose, not a requirement.\n"),
                       ("empty.in", "\n# nothing\n"), ("notes.txt", "six==1\n"),
                       ("setup/constraints.py", "")]:
        write(tmp_path, name, text)
    assert rel(tmp_path, discover(tmp_path)) == [
        "ci/Requirements.txt", "constraints-py311.txt", "constraints.txt",
        "deps/dev.in",  # its content is requirements
        "dev-requirements.txt", "requirements/base.in", "requirements/prod.txt",
        "requirements-dev.txt", "requirements.in", "requirements.pip", "test_requirements.txt",
        "tools/dev.pip"]


def test_a_real_style_test_requirements_txt_gives_its_pins(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "Django==3.2\n")
    write(tmp_path, "test_requirements.txt", TEST_REQUIREMENTS)
    manifests = parse_project(tmp_path)
    assert [m.path for m in manifests] == ["test_requirements.txt"]  # includes requirements.txt
    pins = {(d.name, d.version, d.manifest_path, d.line) for d in manifests[0].dependencies}
    assert pins == {
        ("Django", "3.2", "requirements.txt", 1),
        ("coverage", "7.2.7", "test_requirements.txt", 3),
        ("pytest", "7.4.0", "test_requirements.txt", 5),
        ("pytest-django", "4.5.2", "test_requirements.txt", 6),
        ("freezegun", "1.2.2", "test_requirements.txt", 7),
        ("responses", "0.23.1", "test_requirements.txt", 8),
        ("PyYAML", "5.3.1", "test_requirements.txt", 9),
    }
    coverage = next(d for d in manifests[0].dependencies if d.name == "coverage")
    assert coverage.extras == ("toml",) and len(coverage.hashes) == 1


def test_in_pip_and_requirements_folder_files_are_parsed(tmp_path: Path) -> None:
    write(tmp_path, "requirements.in", "flask==2.0.0\nrequests\n")
    write(tmp_path, "legacy.pip", "urllib3==1.24.1\n")
    write(tmp_path, "requirements/docs.txt", "sphinx==7.1.2\n")
    found = {d.name: (d.version, d.manifest_path) for m in parse_project(tmp_path)
             for d in m.dependencies}
    assert found == {"flask": ("2.0.0", "requirements.in"), "requests": (None, "requirements.in"),
                     "urllib3": ("1.24.1", "legacy.pip"),
                     "sphinx": ("7.1.2", "requirements/docs.txt")}


def test_a_constraints_file_pins_only_what_the_project_requires(tmp_path: Path) -> None:
    write(tmp_path, "constraints.txt",
          "# organisation-wide pins\nDjango==3.2.25\nrequests==2.31.0\nflask==2.0.0\n"
          "celery>=5\n")
    write(tmp_path, "requirements.txt", "django>=3.2\nrequests[socks]\n")
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\ndependencies = ["celery"]\n')
    manifests = {m.path: m for m in parse_project(tmp_path)}
    constraints = manifests["constraints.txt"]
    assert (constraints.kind, constraints.errors) == ("constraints", [])
    # The pin comes from the constraint's own line (where a patch must change it); flask is
    # required by nothing, and "celery>=5" is not a pin, so neither is a dependency.
    assert [(d.name, d.version, d.specifier, d.line, d.direct)
            for d in constraints.dependencies] == [
        ("Django", "3.2.25", "==3.2.25", 2, True), ("requests", "2.31.0", "==2.31.0", 3, True)]
    # The requirement itself stays as written: unpinned, at its own line.
    assert [(d.name, d.version, d.specifier) for d in
            manifests["requirements.txt"].dependencies] == [
        ("django", None, ">=3.2"), ("requests", None, "")]


def test_a_constraints_file_read_through_c_is_not_reported_twice(tmp_path: Path) -> None:
    write(tmp_path, "constraints.txt", "django==3.2.25\nflask==2.0.0\n")
    write(tmp_path, "requirements.txt", "-c constraints.txt\ndjango\n")
    manifests = parse_project(tmp_path)
    assert [m.path for m in manifests] == ["requirements.txt"]
    assert [(d.name, d.version, d.manifest_path) for d in manifests[0].dependencies] == [
        ("django", None, "requirements.txt"), ("django", "3.2.25", "constraints.txt")]


def test_a_constraints_file_alone_gives_no_dependency(tmp_path: Path) -> None:
    path = write(tmp_path, "constraints.txt", "django==3.2.25\nbroken==\n")
    manifest = parse_manifest(tmp_path, path)
    assert (manifest.kind, manifest.dependencies) == ("constraints", [])
    assert [e.line for e in manifest.errors] == [2]  # what it cannot read is still reported
    assert parse_project(tmp_path)[0].dependencies == []


def test_installed_and_generated_trees_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "six==1.16.0\n")
    skipped = ["node_modules/pkg/requirements.txt", "bower_components/x/requirements.txt",
               ".venv/lib/requirements.txt", "venv/requirements.txt", ".tox/py311/pdm.lock",
               "env/lib/python3.11/site-packages/pkg/requirements.txt",
               "build/lib/dist-packages/pkg/requirements.txt", "__pycache__/requirements.txt",
               ".hidden/requirements.txt"]
    for name in skipped:
        write(tmp_path, name, "six==1.16.0\n")
    write(tmp_path, "env/pyvenv.cfg", "home = /usr/bin\n")  # a virtualenv, whatever its name
    write(tmp_path, "env/requirements.txt", "six==1.16.0\n")
    # Test folders are the project's own (CI installs them): exclude them per project.
    write(tmp_path, "tests/requirements.txt", "six==1.16.0\n")
    assert rel(tmp_path, discover(tmp_path)) == ["requirements.txt", "tests/requirements.txt"]


@pytest.mark.parametrize(("path", "pattern", "expected"), [
    ("tests/inventory/data/mixed/requirements.txt", "tests/**", True),
    ("tests/requirements.txt", "tests", True),  # a folder pattern covers what is below it
    ("tests/requirements.txt", "tests/", True),
    ("app/tests/requirements.txt", "tests/**", False),  # anchored at the root
    ("app/tests/requirements.txt", "**/tests/**", True),
    ("tests/requirements.txt", "**/tests/**", True),  # ** matches zero folders
    ("requirements.txt", "**/requirements.txt", True),
    ("a/b/requirements-dev.txt", "**/requirements.txt", False),
    ("a/b/c/requirements-dev.txt", "a/**/*.txt", True),
    ("requirements.txt", "*/requirements.txt", False),  # * stays within a segment
    ("docs/requirements.txt", "*/requirements.txt", True),
    ("docs/requirements.txt", "/docs/*.txt", True),
    ("Docs/requirements.txt", "docs/**", False),  # case-sensitive, like git paths
])
def test_glob_matching(path: str, pattern: str, expected: bool) -> None:
    assert path_matches(path, [pattern]) is expected


def test_include_exclude_selection_and_validation() -> None:
    assert selected("app/requirements.txt", include=["app/**"])
    assert not selected("lib/requirements.txt", include=["app/**"])
    assert not selected("app/tests/requirements.txt", include=["app/**"],
                        exclude=["**/tests/**"])  # exclude wins
    assert clean_patterns([" tests/** ", "", "tests/**", "docs"]) == ["tests/**", "docs"]
    for bad in ["tests/**", ["../outside/**"], ["a\x00b"], [3], ["x" * 301], [
            f"p{i}" for i in range(101)]]:
        with pytest.raises(InvalidPattern):
            clean_patterns(bad)


def test_parse_project_excludes_manifests_and_lists_them(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "-r tests/shared.txt\nsix==1.16.0\n")
    write(tmp_path, "tests/shared.txt", "attrs==23.1.0\n")  # read through -r: part of it
    write(tmp_path, "tests/fixtures/app/requirements.txt", "django==1.11\n")
    write(tmp_path, "tests/fixtures/app/pdm.lock", (
        Path(__file__).parent / "data" / "pdm4" / "pdm.lock").read_text())
    write(tmp_path, "docs/requirements.txt", "sphinx==7.1.2\n")
    excluded: list[str] = []
    manifests = parse_project(tmp_path, exclude=["tests/**"], excluded=excluded)
    assert [m.path for m in manifests] == ["docs/requirements.txt", "requirements.txt"]
    assert excluded == ["tests/fixtures/app/pdm.lock", "tests/fixtures/app/requirements.txt"]
    assert {d.manifest_path for m in manifests for d in m.dependencies} == {
        "docs/requirements.txt", "requirements.txt", "tests/shared.txt"}

    only: list[str] = []
    manifests = parse_project(tmp_path, include=["docs/**"], excluded=only)
    assert [m.path for m in manifests] == ["docs/requirements.txt"]
    assert len(only) == 3
