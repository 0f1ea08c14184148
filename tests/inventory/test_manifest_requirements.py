"""pip requirements files: pip-compile output, options, includes, constraints, errors."""

from __future__ import annotations

from pathlib import Path

from apps.inventory.manifests import ParsedDependency, parse_manifest, parse_project
from apps.inventory.manifests.pip_format import (
    join_lines,
    logical_lines,
    split_args_options,
    split_lines,
)
from apps.inventory.manifests.requirements import parse_requirements, parse_requirements_tree

DATA = Path(__file__).parent / "data"


def by_name(deps: list[ParsedDependency]) -> dict[str, ParsedDependency]:
    found: dict[str, ParsedDependency] = {}
    for dep in deps:
        assert dep.normalised_name not in found, f"duplicate {dep.normalised_name}"
        found[dep.normalised_name] = dep
    return found


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- pip-compile output ------------------------------------------------------


def test_pip_compile_output_with_hashes_and_via_comments() -> None:
    root = DATA / "pip-compile"
    manifest = parse_manifest(root, root / "requirements.txt")
    assert manifest.kind == "requirements"
    assert manifest.path == "requirements.txt"
    assert manifest.errors == []
    deps = by_name(manifest.dependencies)
    expected = {
        "asgiref": ("3.7.2", 7, 2),
        "django": ("3.2", 11, 2),
        "jinja2": ("2.10", 15, 2),
        "markupsafe": ("1.1.1", 19, 1),
        "pytz": ("2023.3.post1", 22, 2),
        "pyyaml": ("5.3.1", 26, 1),
        "sqlparse": ("0.4.4", 29, 2),
        "urllib3": ("1.24.1", 33, 2),
    }
    assert {name: (d.version, d.line, len(d.hashes)) for name, d in deps.items()} == expected
    for dep in deps.values():
        assert dep.ecosystem == "PyPI"
        assert dep.direct is True
        assert dep.manifest_path == "requirements.txt"
        assert dep.specifier == f"=={dep.version}"
        assert all(h.startswith("sha256:") and len(h) == 7 + 64 for h in dep.hashes)
    assert deps["django"].hashes[0] == (
        "sha256:37738187e6fba14396e9dea94c67836f8a66089042087c63f33a5c7bb2e12cc6")


# --- the hand-written file with every feature -------------------------------


def _mixed():
    root = DATA / "mixed"
    return parse_manifest(root, root / "requirements.txt")


def test_mixed_requirements_names_versions_and_lines() -> None:
    deps = _mixed().dependencies
    table = [(d.name, d.normalised_name, d.version, d.specifier, d.manifest_path, d.line)
             for d in deps]
    assert table == [
        # -r requirements/base.txt (line 10) pulls in common.txt first, then base.txt's own pin.
        ("pytz", "pytz", "2021.1", "==2021.1", "requirements/common.txt", 3),
        ("sqlparse", "sqlparse", "0.4.4", "==0.4.4", "requirements/base.txt", 2),
        ("Django", "django", "3.2", "==3.2", "requirements.txt", 13),
        ("PyYAML", "pyyaml", "5.3.1", "==5.3.1", "requirements.txt", 14),
        ("Jinja2", "jinja2", "2.10", "==2.10", "requirements.txt", 15),
        ("requests", "requests", None, ">=2.20,<3", "requirements.txt", 16),
        ("urllib3", "urllib3", "1.24.1", "==1.24.1", "requirements.txt", 18),
        ("celery", "celery", None, "", "requirements.txt", 20),
        ("gunicorn", "gunicorn", None, ">=20.0", "requirements.txt", 21),
        ("attrs", "attrs", "21.4.0", "===21.4.0", "requirements.txt", 22),
        ("six", "six", None, "==1.*", "requirements.txt", 23),
        ("acme-widgets", "acme-widgets", None, "", "requirements.txt", 24),
        ("SomeTool", "sometool", None, "", "requirements.txt", 26),
        ("mylib", "mylib", None, "", "requirements.txt", 28),
        ("localpkg", "localpkg", None, "", "requirements.txt", 29),
        ("pytest", "pytest", "6.2.5", "==6.2.5", "nested/dev-requirements.txt", 1),
        # Constraint pins, kept only because celery and gunicorn are required.
        ("celery", "celery", "5.2.7", "==5.2.7", "constraints.txt", 2),
        ("gunicorn", "gunicorn", "20.1.0", "==20.1.0", "constraints.txt", 3),
    ]
    assert all(d.direct for d in deps)


def test_mixed_requirements_markers_extras_and_hashes() -> None:
    deps = {(d.normalised_name, d.manifest_path): d for d in _mixed().dependencies}
    jinja = deps["jinja2", "requirements.txt"]
    assert jinja.marker == 'python_version >= "3.6"'
    # The marker sits on a continuation line: still part of line 16's requirement.
    requests = deps["requests", "requirements.txt"]
    assert requests.extras == ("security", "socks")
    assert requests.marker == 'sys_platform != "win32"'
    # Second --hash is on a continuation line.
    assert len(deps["urllib3", "requirements.txt"].hashes) == 2
    assert deps["acme-widgets", "requirements.txt"].extras == ("extra",)
    assert deps["django", "requirements.txt"].hashes == ()


def test_mixed_requirements_errors_carry_path_line_and_packaging_message() -> None:
    errors = [(e.manifest_path, e.line, e.reason.splitlines()[0]) for e in _mixed().errors]
    assert errors == [
        ("requirements/common.txt", 2, "circular include of base.txt skipped"),
        ("requirements.txt", 30,
         "Expected semicolon (after name with no version specifier) or end"),
        ("requirements.txt", 31, "Expected a marker variable or quoted string"),
        ("requirements.txt", 33, "included file not found: missing.txt"),
        ("requirements.txt", 34, "included file is outside the project: ../outside.txt"),
        ("requirements.txt", 35,
         "remote requirements file not fetched: https://example.com/remote-requirements.txt"),
    ]
    # packaging's full message (with the caret line) is kept.
    assert "broken-package==" in _mixed().errors[1].reason


def test_options_are_ignored_and_unnamed_targets_skipped() -> None:
    names = {d.normalised_name for d in _mixed().dependencies}
    # "-e ." and a VCS URL without #egg= cannot be named without building them.
    assert "no-egg" not in names
    assert not any(n.startswith(("http", "git", "-", ".")) for n in names)


def test_included_file_read_once_even_when_included_twice() -> None:
    manifest, included = parse_requirements_tree(DATA / "mixed", DATA / "mixed/requirements.txt")
    paths = [d.manifest_path for d in manifest.dependencies]
    assert paths.count("requirements/base.txt") == 1  # also included by nested/dev-requirements
    assert {p.name for p in included} == {
        "base.txt", "common.txt", "constraints.txt", "dev-requirements.txt"}


# --- focused cases ------------------------------------------------------------


def test_logical_lines_follow_pip_joining_and_comment_rules() -> None:
    text = "a==1 \\\n  --hash=sha256:aa \\\n  --hash=sha256:bb\n# c \\\nb==2 # trailing\n\nc#d\n"
    assert list(logical_lines(text)) == [
        (1, "a==1   --hash=sha256:aa   --hash=sha256:bb"),
        (5, "b==2"),
        (7, "c#d"),  # "#" not preceded by whitespace is not a comment
    ]
    assert split_args_options("foo[x]>=1 ; python_version<'3' --hash=sha256:ab") == (
        "foo[x]>=1 ; python_version<'3'", "--hash=sha256:ab")



def test_logical_lines_map_back_to_physical_columns() -> None:
    """The pin editor rewrites through the same joining: every piece of a logical line
    knows its physical line and column; "\\r" before "\\n" belongs to the line ending."""
    text = "a==1 \\\r\r\n  --hash=sha256:aa \\\r\n  # note\r\nb==2"
    lines = list(split_lines(text))
    assert lines == [("a==1 \\", "\r\r\n"), ("  --hash=sha256:aa \\", "\r\n"),
                     ("  # note", "\r\n"), ("b==2", "")]
    first, second = join_lines(lines)
    assert (first.number, first.indexes, first.content) == (1, [0, 1, 2], "a==1   --hash=sha256:aa")
    assert first.requirement.text == "a==1"
    ((start, end, token),) = first.requirement.options
    assert token == "--hash=sha256:aa"
    assert first.physical_span(start, end) == (1, 2, 18)
    assert first.physical_span(0, end) is None  # spans two physical lines
    assert (second.number, second.content) == (4, "b==2")
    assert [(n, c) for n, c in logical_lines(text)] == [(1, first.content), (4, "b==2")]


def test_pinned_only_for_exact_equality(tmp_path: Path) -> None:
    path = write(tmp_path, "requirements.txt", "\n".join([
        "a==1.0", "b===weird-1", "c==1.0.*", "d>=1.0", "e~=1.0", "f!=1.0", "g==1.0,>=0.9",
        "h", "I-Am_Odd.Name==2.0", "j (==3.0)",
    ]) + "\n")
    deps = by_name(parse_requirements(tmp_path, path).dependencies)
    assert {n: d.version for n, d in deps.items()} == {
        "a": "1.0", "b": "weird-1", "c": None, "d": None, "e": None, "f": None, "g": None,
        "h": None, "i-am-odd-name": "2.0", "j": "3.0",
    }
    assert deps["i-am-odd-name"].name == "I-Am_Odd.Name"
    assert deps["g"].specifier == "==1.0,>=0.9"  # as written, not re-sorted
    assert deps["j"].specifier == "==3.0"


def test_hash_options_in_all_spellings(tmp_path: Path) -> None:
    path = write(tmp_path, "requirements.txt",
                 "pkg==1.0 --hash=sha256:aaa --hash sha256:bbb \\\n"
                 "    --hash=sha512:ccc\n")
    (dep,) = parse_requirements(tmp_path, path).dependencies
    assert dep.hashes == ("sha256:aaa", "sha256:bbb", "sha512:ccc")
    assert dep.line == 1


def test_include_spellings_and_relative_resolution(tmp_path: Path) -> None:
    write(tmp_path, "reqs/a.txt", "a==1\n")
    write(tmp_path, "reqs/b.txt", "b==2\n")
    write(tmp_path, "reqs/sub/c.txt", "c==3\n-r ../a.txt\n")
    top = write(tmp_path, "requirements.txt",
                "-rreqs/b.txt\n--requirement=reqs/sub/c.txt\n--requirement reqs/a.txt\n")
    manifest = parse_requirements(tmp_path, top)
    assert [(d.name, d.manifest_path, d.line) for d in manifest.dependencies] == [
        ("b", "reqs/b.txt", 1), ("c", "reqs/sub/c.txt", 1), ("a", "reqs/a.txt", 1)]
    assert manifest.errors == []


def test_self_include_is_reported_not_looped(tmp_path: Path) -> None:
    path = write(tmp_path, "requirements.txt", "x==1\n-r requirements.txt\n")
    manifest = parse_requirements(tmp_path, path)
    assert [d.name for d in manifest.dependencies] == ["x"]
    assert [(e.line, e.reason) for e in manifest.errors] == [
        (2, "circular include of requirements.txt skipped")]


def test_constraints_only_pin_required_packages(tmp_path: Path) -> None:
    write(tmp_path, "constraints.txt",
          "Django==3.2.25\nrequests>=2\nflask==2.0.0\n-c more-constraints.txt\n")
    write(tmp_path, "more-constraints.txt", "requests==2.31.0\n")
    path = write(tmp_path, "requirements.txt", "-c constraints.txt\ndjango\nrequests[socks]\n")
    deps = parse_requirements(tmp_path, path).dependencies
    assert [(d.name, d.version, d.manifest_path, d.line, d.direct) for d in deps] == [
        ("django", None, "requirements.txt", 2, True),
        ("requests", None, "requirements.txt", 3, True),
        ("Django", "3.2.25", "constraints.txt", 1, True),
        ("requests", "2.31.0", "more-constraints.txt", 1, True),
    ]


def test_editables_in_constraint_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "c.txt", "-e git+https://example.com/x.git#egg=x\nx==1\n")
    path = write(tmp_path, "requirements.txt", "-c c.txt\nx\n")
    deps = parse_requirements(tmp_path, path).dependencies
    assert [(d.manifest_path, d.version) for d in deps] == [
        ("requirements.txt", None), ("c.txt", "1")]


def test_url_and_vcs_forms(tmp_path: Path) -> None:
    path = write(tmp_path, "requirements.txt", "\n".join([
        "-e git+ssh://git@github.com/acme/tool.git@main#egg=acme_tool",
        "--editable=hg+https://hg.example.com/repo#egg=HgPkg&subdirectory=src",
        "https://example.com/dist/Flask-2.0.1.tar.gz ; python_version >= '3.6'",
        "pkg @ git+https://github.com/acme/pkg.git@v1 ; sys_platform == 'linux'",
        "-e ./local/project",
    ]) + "\n")
    manifest = parse_requirements(tmp_path, path)
    assert manifest.errors == []
    assert [(d.name, d.version, d.specifier, d.marker, d.line)
            for d in manifest.dependencies] == [
        ("acme_tool", None, "", "", 1),
        ("HgPkg", None, "", "", 2),
        ("Flask", None, "", 'python_version >= "3.6"', 3),
        ("pkg", None, "", 'sys_platform == "linux"', 4),
    ]


def test_bad_option_line_and_missing_value_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "requirements.txt", 'ok==1\n-r\n--index-url "unclosed\nlast==2\n')
    manifest = parse_requirements(tmp_path, path)
    assert [d.name for d in manifest.dependencies] == ["ok", "last"]
    assert [e.line for e in manifest.errors] == [2, 3]


def test_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(b"\xef\xbb\xbfDjango==3.2\r\n# comment\r\nPyYAML==5.3.1 \\\r\n"
                     b"  --hash=sha256:abc\r\n")
    deps = parse_requirements(tmp_path, path).dependencies
    assert [(d.name, d.normalised_name, d.version, d.line, d.hashes) for d in deps] == [
        ("Django", "django", "3.2", 1, ()),
        ("PyYAML", "pyyaml", "5.3.1", 3, ("sha256:abc",)),
    ]


def test_undecodable_file_gives_one_error(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(b"Django==3.2\n\xff\xfe\x00bad\n")
    manifest = parse_manifest(tmp_path, path)
    assert manifest.dependencies == []
    assert len(manifest.errors) == 1
    assert manifest.errors[0].manifest_path == "requirements.txt"
    assert manifest.errors[0].line is None


def test_project_parses_included_files_once(tmp_path: Path) -> None:
    write(tmp_path, "requirements/base.txt", "django==3.2\n")
    write(tmp_path, "requirements/dev.txt", "-r base.txt\npytest==7.0\n")
    write(tmp_path, "requirements/prod.txt", "-r base.txt\ngunicorn==21.2.0\n")
    write(tmp_path, "requirements/constraints.txt", "gunicorn==21.2.0\n")
    write(tmp_path, "requirements-ci.txt", "-c requirements/constraints.txt\ngunicorn\n")
    # a.txt and b.txt only include each other: reported once, from the first.
    write(tmp_path, "tools/requirements/a.txt", "-r b.txt\naaa==1\n")
    write(tmp_path, "tools/requirements/b.txt", "-r a.txt\nbbb==1\n")
    manifests = parse_project(tmp_path)
    assert [m.path for m in manifests] == [
        "requirements/dev.txt", "requirements/prod.txt", "requirements-ci.txt",
        "tools/requirements/a.txt",
    ]
    a_txt = manifests[-1]
    assert [(d.name, d.manifest_path) for d in a_txt.dependencies] == [
        ("bbb", "tools/requirements/b.txt"), ("aaa", "tools/requirements/a.txt")]
    assert [e.manifest_path for e in a_txt.errors] == ["tools/requirements/b.txt"]
