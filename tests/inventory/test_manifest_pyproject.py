"""pyproject.toml: PEP 621, PEP 735 and Poetry dependency tables."""

from __future__ import annotations

from pathlib import Path

from apps.inventory.manifests import parse_manifest
from apps.inventory.manifests.pyproject import poetry_exact_version

DATA = Path(__file__).parent / "data"


def test_pep621_dependencies_optional_and_groups() -> None:
    root = DATA / "pep621"
    manifest = parse_manifest(root, root / "pyproject.toml")
    assert manifest.kind == "pyproject.toml"
    rows = [(d.name, d.normalised_name, d.version, d.specifier, d.line)
            for d in manifest.dependencies]
    assert rows == [
        ("Django", "django", "3.2", "==3.2", 16),
        ("PyYAML", "pyyaml", "5.3.1", "==5.3.1", 17),
        ("Jinja2", "jinja2", None, ">=2.10,<3", 18),
        ("requests", "requests", "2.31.0", "==2.31.0", 19),
        ("urllib3", "urllib3", "1.24.1", "===1.24.1", 20),
        ("pip", "pip", None, "", 21),  # direct URL reference: unpinned
        ("psycopg2-binary", "psycopg2-binary", "2.9.9", "==2.9.9", 26),
        ("sphinx", "sphinx", None, ">=7", 28),
        ("furo", "furo", None, "", 29),
        ("pytest", "pytest", "8.0.0", "==8.0.0", 36),  # {include-group} is skipped
        ("ruff", "ruff", None, "", 37),
    ]
    deps = {d.name: d for d in manifest.dependencies}
    assert deps["requests"].extras == ("socks",)
    assert deps["requests"].marker == 'python_version >= "3.8"'
    assert all(d.direct for d in manifest.dependencies)
    assert [(e.manifest_path, e.line) for e in manifest.errors] == [("pyproject.toml", 22)]
    assert manifest.errors[0].reason.startswith("Expected semicolon")


def test_poetry_1_tables() -> None:
    root = DATA / "poetry1"
    manifest = parse_manifest(root, root / "pyproject.toml")
    assert manifest.errors == []
    rows = [(d.name, d.version, d.specifier, d.line, d.extras, d.marker)
            for d in manifest.dependencies]
    assert rows == [  # "python" is the interpreter, not a package
        ("Django", "3.2", "3.2", 9, (), ""),  # a bare version is exact in Poetry
        ("PyYAML", None, "^5.3", 10, (), ""),
        ("requests", "2.25.1", "==2.25.1", 11, ("socks",), ""),
        ("mylib", None, "", 12, (), ""),  # git source
        ("pywin32", "305", "305", 13, (), "sys_platform == 'win32'"),
        ("pytest", None, "^6.2", 16, (), ""),
    ]


def test_poetry_2_does_not_repeat_pep621_entries() -> None:
    root = DATA / "poetry2"
    manifest = parse_manifest(root, root / "pyproject.toml")
    assert manifest.errors == []
    assert [(d.name, d.version, d.specifier, d.line) for d in manifest.dependencies] == [
        ("django", None, ">=5.1,<6.0", 11),
        ("jinja2", "3.1.4", "==3.1.4", 12),
        ("pyyaml", None, ">=6.0", 16),
        ("pytest", None, "^8.3", 26),
    ]


def test_poetry_multiple_constraints_and_subtables(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.poetry.dependencies]\n"
        'python = "^3.8"\n'
        "foo = [\n"
        '    {version = "1.0.0", python = "<3.10"},\n'
        '    {version = "^2.0", python = ">=3.10"},\n'
        "]\n"
        '"Quoted.Name" = "==4.0"\n'
        "\n"
        "[tool.poetry.dependencies.bar]\n"
        'version = "~1.2"\n'
        "\n"
        "[tool.poetry.group.test.dependencies]\n"
        'baz = "*"\n')
    manifest = parse_manifest(tmp_path, "pyproject.toml")
    assert manifest.errors == []
    assert [(d.name, d.normalised_name, d.version, d.line) for d in manifest.dependencies] == [
        ("foo", "foo", "1.0.0", 3), ("foo", "foo", None, 3),
        ("Quoted.Name", "quoted-name", "4.0", 7),
        ("bar", "bar", None, 9),
        ("baz", "baz", None, 13),
    ]


def test_poetry_exact_versions() -> None:
    assert poetry_exact_version("1.2.3") == "1.2.3"
    assert poetry_exact_version("==1.2.3") == "1.2.3"
    assert poetry_exact_version("=1.2") == "1.2"
    for ranged in ("^1.2", "~1.2", ">=1,<2", "1.2.*", "*", "", "1.2 || 1.3"):
        assert poetry_exact_version(ranged) is None, ranged


def test_invalid_toml_and_wrong_types(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\nname = 'x'\n")
    manifest = parse_manifest(tmp_path, tmp_path / "pyproject.toml")
    assert manifest.dependencies == []
    assert len(manifest.errors) == 1
    assert manifest.errors[0].reason.startswith("invalid TOML")

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = "django"\n\n'
        "[project.optional-dependencies]\nextra = [1, \"ok==1.0\"]\n")
    manifest = parse_manifest(tmp_path, tmp_path / "pyproject.toml")
    assert [(d.name, d.version, d.line) for d in manifest.dependencies] == [("ok", "1.0", 6)]
    assert [(e.line, e.reason) for e in manifest.errors] == [
        (3, "project.dependencies must be an array"),
        (6, "not a string: 1"),
    ]


# --- line numbers come from the position scanner the pin editor uses ---------------------
# (apps.inventory.manifests.lines.toml_positions; these are the layouts the former
# line-by-line index got wrong.)


def test_lines_of_repeated_strings_after_an_include_group_entry(tmp_path: Path) -> None:
    """Each array element is located by its index, not by its rank among strings: the
    former index put the two ``six`` entries on each other's line."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[dependency-groups]\ntest = [\n  {include-group = "base"},\n'
                    '  "six==1.15.0",\n  "six==1.15.0",\n]\n')
    manifest = parse_manifest(tmp_path, path)
    assert [(d.name, d.line) for d in manifest.dependencies] == [("six", 4), ("six", 5)]


def test_line_of_a_dependency_written_with_escapes_or_as_a_multiline_string(
        tmp_path: Path) -> None:
    r"""A ``\U`` escape (not JSON's) or a multi-line string used to lose the element's own
    line (the array's was reported)."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\ndependencies = [\n'
                    '  "idna==2.0",\n'
                    '  "six==1.15.0; platform_release == \\"\\U0001F600\\"",\n'
                    '  """\nattrs==21.4.0""",\n'
                    ']\n')
    manifest = parse_manifest(tmp_path, path)
    assert [(d.name, d.line) for d in manifest.dependencies] == [
        ("idna", 4), ("six", 5), ("attrs", 6)]
    assert manifest.dependencies[1].marker == 'platform_release == "\U0001F600"'


def test_poetry_dependencies_in_an_inline_table_have_lines(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.poetry]\nname = "x"\n'
                    'dependencies = { python = "^3.9", six = "1.15.0" }\n'
                    'group.dev.dependencies = { pytest = { version = "7.4.2" } }\n')
    manifest = parse_manifest(tmp_path, path)
    assert [(d.name, d.version, d.line) for d in manifest.dependencies] == [
        ("six", "1.15.0", 3), ("pytest", "7.4.2", 4)]
