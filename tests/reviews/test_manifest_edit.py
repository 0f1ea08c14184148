"""upgrade_pin: rewrite one dependency pin, keep every other byte of the manifest.

Each edit is checked three ways: the whole new text equals the expected text, the
notes and changed lines are exact, and the inventory's own manifest parser reads
the new file as the old one with just that pin moved.
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from apps.inventory.manifests import parse_manifest
from apps.reviews.patching.manifest_edit import ManifestEdit, ManualPatchRequired, upgrade_pin

DATA = Path(__file__).parent / "data" / "manifests"

HASH_CHECKING_NOTE = (
    "requirements.txt: other requirements still carry --hash options, so pip runs in "
    "hash-checking mode and will reject {pin} until its hashes are added")
PEP621_LOCK_NOTE = ("pyproject.toml: regenerate the project's lock file (uv.lock, pdm.lock...) "
                    "if it has one, so it records {pkg} {new}")
POETRY_LOCK_NOTE = ("pyproject.toml: run `poetry lock` so poetry.lock (if the project has one) "
                    "records {pkg} {new}")


def read(name: str) -> str:
    """Test data exactly as stored (no newline translation: CRLF must survive)."""
    return (DATA / name).read_bytes().decode("utf-8")


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def upgrade(text: str, path: str, package: str, old: str, new: str,
            line: int | None) -> ManifestEdit:
    return upgrade_pin(text=text, manifest_path=path, package=package, old_version=old,
                       new_version=new, line=line)


def parsed(directory: Path, name: str, text: str):
    directory.mkdir()
    (directory / name).write_bytes(text.encode("utf-8"))
    manifest = parse_manifest(directory, directory / name)
    return manifest.dependencies, [(e.line, e.reason) for e in manifest.errors]


def assert_only_pin_moved(tmp_path: Path, name: str, before: str, after: str, package: str,
                          old: str, new: str, edited: set[int]) -> None:
    """The inventory reads ``after`` as ``before`` with the pins declared on the
    ``edited`` lines moved from ``old`` to ``new`` (and their hashes gone); other
    declarations differ at most by their line number."""
    old_deps, old_errors = parsed(tmp_path / "before", name, before)
    new_deps, new_errors = parsed(tmp_path / "after", name, after)
    assert new_errors == old_errors
    assert len(new_deps) == len(old_deps)
    for was, now in zip(old_deps, new_deps, strict=True):
        expected = dataclasses.replace(was, line=now.line)
        if was.line in edited and was.normalised_name == package:
            assert was.version == old
            expected = dataclasses.replace(expected, version=new, hashes=(),
                                           specifier=was.specifier.replace(old, new))
        assert now == expected


# --- pip-compile output: hashes and "# via" comments --------------------------------


def test_compiled_requirement_loses_its_hashes_and_keeps_its_via_comment(tmp_path):
    text = read("requirements-compiled.txt")
    edit = upgrade(text, "requirements.txt", "jinja2", "2.10", "2.11.3", line=15)

    start = text.index("jinja2==2.10 \\\n")
    end = text.index("    # via\n    #   -r requirements.in\n    #   flask\n")
    assert edit.text == text[:start] + "jinja2==2.11.3\n" + text[end:]
    assert edit.changed_lines == [15, 16, 17, 18]
    assert edit.notes == [
        "requirements.txt:15: removed 3 --hash options for jinja2 (they pinned 2.10); "
        "regenerate hashes, e.g. pip-compile --generate-hashes",
        HASH_CHECKING_NOTE.format(pin="jinja2==2.11.3"),
    ]
    assert_only_pin_moved(tmp_path, "requirements.txt", text, edit.text, "jinja2", "2.10",
                          "2.11.3", {15})


def test_compiled_requirement_with_marker_keeps_the_marker(tmp_path):
    text = read("requirements-compiled.txt")
    edit = upgrade(text, "requirements.txt", "pywin32", "305", "306", line=30)

    start = text.index('pywin32==305 ; sys_platform == "win32" \\\n')
    end = text.index("    # via -r requirements.in\npyyaml")
    assert edit.text == text[:start] + 'pywin32==306 ; sys_platform == "win32"\n' + text[end:]
    assert edit.changed_lines == [30, 31, 32]
    assert edit.notes[0] == (
        "requirements.txt:30: removed 2 --hash options for pywin32 (they pinned 305); "
        "regenerate hashes, e.g. pip-compile --generate-hashes")
    assert_only_pin_moved(tmp_path, "requirements.txt", text, edit.text, "pywin32", "305",
                          "306", {30})


def test_single_hash_is_reported_in_the_singular():
    text = read("requirements-compiled.txt")
    edit = upgrade(text, "requirements.txt", "pyyaml", "5.3.1", "5.4", line=34)

    hash_line = text.splitlines(keepends=True)[34]
    assert hash_line.startswith("    --hash=sha256:")
    assert edit.text == replace_once(text, "pyyaml==5.3.1 \\\n" + hash_line, "pyyaml==5.4\n")
    assert edit.changed_lines == [34, 35]
    assert edit.notes[0].startswith("requirements.txt:34: removed 1 --hash option for pyyaml ")


def test_wrong_line_hint_falls_back_to_searching_the_file(tmp_path):
    text = read("requirements-compiled.txt")
    hinted = upgrade(text, "requirements.txt", "jinja2", "2.10", "2.11.3", line=15)
    edit = upgrade(text, "requirements.txt", "jinja2", "2.10", "2.11.3", line=11)

    assert edit.text == hinted.text
    assert edit.changed_lines == [15, 16, 17, 18]
    assert edit.notes == [
        "requirements.txt:11: no jinja2 2.10 pin on that line; upgraded the pin on line 15 "
        "instead",
        *hinted.notes,
    ]


def test_hint_on_a_hash_continuation_line_selects_that_requirement():
    text = read("requirements-compiled.txt")
    edit = upgrade(text, "requirements.txt", "jinja2", "2.10", "2.11.3", line=17)
    assert edit.notes[0].startswith("requirements.txt:15: removed 3 --hash options")


def test_name_is_matched_by_pep503_normalisation():
    text = read("requirements-compiled.txt")
    edit = upgrade(text, "requirements.txt", "Jinja2", "2.10", "2.11.3", line=None)
    assert "jinja2==2.11.3\n    # via\n" in edit.text


# --- a hand-written requirements file: CRLF, comments, extras, markers, spacing ------


def test_handwritten_requirement_keeps_extras_comment_and_crlf(tmp_path):
    text = read("requirements-handwritten.txt")
    assert text.count("\r\n") == 14 and not text.endswith("\n")
    edit = upgrade(text, "requirements/prod.txt", "django", "3.2.12", "3.2.25", line=6)

    assert edit.text == replace_once(
        text,
        "Django[argon2]==3.2.12  # LTS; pinned for the admin theme\r\n",
        "Django[argon2]==3.2.25  # LTS; pinned for the admin theme\r\n")
    assert edit.notes == []
    assert edit.changed_lines == [6]
    assert_only_pin_moved(tmp_path, "requirements.txt", text, edit.text, "django", "3.2.12",
                          "3.2.25", {6})


@pytest.mark.parametrize(
    ("package", "old", "new", "line", "before", "after"),
    [
        ("jinja2", "2.10", "2.11.3", 7, "jinja2 == 2.10\r\n", "jinja2 == 2.11.3\r\n"),
        ("pyyaml", "5.3.1", "5.4", 8, 'PyYAML===5.3.1 ; python_version >= "3.8"\r\n',
         'PyYAML===5.4 ; python_version >= "3.8"\r\n'),
        ("ruamel-yaml", "0.17.21", "0.17.22", 10, "ruamel.yaml==0.17.21 \\\r\n",
         "ruamel.yaml==0.17.22 \\\r\n"),
        ("celery", "5.2.3", "5.2.7", 13, 'celery[redis,sqs]==5.2.3; sys_platform != "win32"\t#',
         'celery[redis,sqs]==5.2.7; sys_platform != "win32"\t#'),
    ],
)
def test_handwritten_requirement_variants(tmp_path, package, old, new, line, before, after):
    text = read("requirements-handwritten.txt")
    edit = upgrade(text, "requirements.txt", package, old, new, line=line)

    assert edit.text == replace_once(text, before, after)
    assert edit.notes == []
    assert edit.changed_lines == [line]
    assert_only_pin_moved(tmp_path, "requirements.txt", text, edit.text, package, old, new,
                          {line})


def test_inline_hashes_on_the_last_line_without_final_newline(tmp_path):
    text = read("requirements-handwritten.txt")
    edit = upgrade(text, "requirements.txt", "urllib3", "1.26.4", "1.26.5", line=15)

    last_line = text.rsplit("\r\n", 1)[1]
    assert edit.text == text[:-len(last_line)] + "urllib3==1.26.5  # see SECURITY.md"
    assert not edit.text.endswith("\n")
    assert edit.changed_lines == [15]
    # No other requirement has hashes: no warning about hash-checking mode.
    assert edit.notes == [
        "requirements.txt:15: removed 2 --hash options for urllib3 (they pinned 1.26.4); "
        "regenerate hashes, e.g. pip-compile --generate-hashes"]
    assert_only_pin_moved(tmp_path, "requirements.txt", text, edit.text, "urllib3", "1.26.4",
                          "1.26.5", {15})


def test_range_requirement_is_not_a_pin():
    text = read("requirements-handwritten.txt")
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(text, "requirements.txt", "requests", "2.25.0", "2.31.0", line=9)
    assert raised.value.reason == (
        "requirements.txt:9: `requests>=2.25,<3` is not an exact pin (a single == or ===), so "
        "there is no version to replace; change it to exclude 2.25.0 (e.g. >=2.31.0) by hand")


def test_editable_vcs_requirement_is_not_found_as_a_pin():
    text = read("requirements-handwritten.txt")
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(text, "requirements.txt", "payments-sdk", "1.4.0", "1.4.1", line=12)
    assert raised.value.reason == (
        "payments-sdk 1.4.0 is not declared in requirements.txt: no requirement for "
        "payments-sdk was found there (it may come in transitively or from another manifest)")


def test_package_not_in_the_file():
    text = read("requirements-compiled.txt")
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(text, "requirements/base.txt", "flask", "1.0", "2.2.5", line=21)
    assert raised.value.reason == (
        "flask 1.0 is not declared in requirements/base.txt: no requirement for flask was "
        "found there (it may come in transitively or from another manifest)")


def test_package_pinned_at_another_version():
    text = read("requirements-compiled.txt")
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(text, "requirements.txt", "django", "3.2.11", "3.2.25", line=11)
    assert raised.value.reason == (
        "requirements.txt:11 pins django 3.2.12, not 3.2.11; nothing to upgrade there")


def test_already_upgraded_pin_is_left_alone():
    """Several findings in one file are applied one after another to the same text."""
    text = "jinja2==2.11.3\nflask==2.2.5\n"
    edit = upgrade(text, "requirements.txt", "jinja2", "2.10", "2.11.3", line=1)
    assert edit == ManifestEdit(
        text, ["requirements.txt:1 already pins jinja2 2.11.3; left unchanged"], [])


def test_every_pin_is_upgraded_without_a_hint_and_only_the_hinted_one_with_it():
    text = ('jinja2==2.10 ; python_version < "3.8"\n'
            "flask==1.1.4\n"
            'jinja2==2.10 ; python_version >= "3.8"\n')
    both = upgrade(text, "requirements.txt", "jinja2", "2.10", "2.11.3", line=None)
    assert both.text == text.replace("2.10", "2.11.3")
    assert both.changed_lines == [1, 3]
    assert both.notes == ["requirements.txt: jinja2 2.10 is pinned on lines 1, 3; upgraded "
                          "all of them"]

    one = upgrade(text, "requirements.txt", "jinja2", "2.10", "2.11.3", line=3)
    assert one.text == replace_once(text, 'jinja2==2.10 ; python_version >= "3.8"',
                                    'jinja2==2.11.3 ; python_version >= "3.8"')
    assert (one.notes, one.changed_lines) == ([], [3])


def test_separate_hash_values_and_other_options_on_continuation_lines():
    text = ("lxml==4.6.2 \\\n"
            "    --hash sha256:aaaa \\\n"
            "    --config-settings=--build-option=--with-xslt \\\n"
            "    --hash=sha256:bbbb\n"
            "requests==2.31.0\n")
    edit = upgrade(text, "requirements.txt", "lxml", "4.6.2", "4.9.1", line=1)
    assert edit.text == ("lxml==4.9.1 \\\n"
                         "    --config-settings=--build-option=--with-xslt\n"
                         "requests==2.31.0\n")
    assert edit.changed_lines == [1, 2, 3, 4]
    assert edit.notes == ["requirements.txt:1: removed 2 --hash options for lxml (they pinned "
                          "4.6.2); regenerate hashes, e.g. pip-compile --generate-hashes"]


def test_crlf_hash_lines_are_removed_with_their_line_endings():
    text = "six==1.15.0 \\\r\n    --hash=sha256:aaaa \\\r\n    --hash=sha256:bbbb\r\n# end\r\n"
    edit = upgrade(text, "requirements.txt", "six", "1.15.0", "1.16.0", line=1)
    assert edit.text == "six==1.16.0\r\n# end\r\n"
    assert edit.changed_lines == [1, 2, 3]


def test_byte_order_mark_is_kept():
    edit = upgrade("\ufeffsix==1.15.0\n", "requirements.txt", "six", "1.15.0", "1.16.0", line=1)
    assert edit.text == "\ufeffsix==1.16.0\n"


def test_wildcard_pin_is_not_a_pin():
    with pytest.raises(ManualPatchRequired, match=r"`six==1\.15\.\*` is not an exact pin"):
        upgrade("six==1.15.*\n", "requirements.txt", "six", "1.15.0", "1.16.0", line=1)


def test_new_version_must_be_a_plain_version():
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade("six==1.15.0\n", "requirements.txt", "six", "1.15.0",
                "1.16.0\n--index-url https://evil.example", line=1)
    assert raised.value.reason.startswith("'1.16.0\\n--index-url https://evil.example' is not "
                                          "a plain version number")


def test_result_that_would_not_pin_the_new_version_is_refused():
    # "1.16.0-" passes the character check but is no PEP 440 version.
    with pytest.raises(ManualPatchRequired, match=r"does not pin six 1\.16\.0-"):
        upgrade("six==1.15.0\n", "requirements.txt", "six", "1.15.0", "1.16.0-", line=1)


def test_output_parses_with_packaging():
    text = read("requirements-handwritten.txt")
    edit = upgrade(text, "requirements.txt", "pyyaml", "5.3.1", "5.4", line=8)
    requirement = Requirement(edit.text.split("\r\n")[7])
    assert str(requirement.specifier) == "===5.4"
    assert str(requirement.marker) == 'python_version >= "3.8"'


# --- pyproject.toml: PEP 621 and PEP 735 --------------------------------------------


def test_pep621_dependency_is_edited_inside_its_string(tmp_path):
    text = read("pyproject-pep621.toml")
    edit = upgrade(text, "pyproject.toml", "pyyaml", "5.3.1", "5.4", line=14)

    assert edit.text == replace_once(
        text,
        '    "PyYAML==5.3.1",  # loader hardening pending, see #412\n',
        '    "PyYAML==5.4",  # loader hardening pending, see #412\n')
    assert edit.changed_lines == [14]
    assert edit.notes == [PEP621_LOCK_NOTE.format(pkg="pyyaml", new="5.4")]
    assert tomllib.loads(edit.text)["project"]["dependencies"][1] == "PyYAML==5.4"
    assert_only_pin_moved(tmp_path, "pyproject.toml", text, edit.text, "pyyaml", "5.3.1",
                          "5.4", {14})


def test_pep621_without_hint_upgrades_every_pin_of_the_version(tmp_path):
    text = read("pyproject-pep621.toml")
    edit = upgrade(text, "pyproject.toml", "pyyaml", "5.3.1", "5.4", line=None)

    expected = replace_once(text, '"PyYAML==5.3.1"', '"PyYAML==5.4"')
    expected = replace_once(expected, '"pyyaml==5.3.1"]', '"pyyaml==5.4"]')
    assert edit.text == expected
    assert edit.changed_lines == [14, 30]
    assert edit.notes == [
        "pyproject.toml: pyyaml 5.3.1 is pinned on lines 14, 30; upgraded all of them",
        PEP621_LOCK_NOTE.format(pkg="pyyaml", new="5.4"),
    ]
    assert tomllib.loads(edit.text)["dependency-groups"]["test"] == ["pytest==7.4.2",
                                                                     "pyyaml==5.4"]
    assert_only_pin_moved(tmp_path, "pyproject.toml", text, edit.text, "pyyaml", "5.3.1",
                          "5.4", {14, 30})


@pytest.mark.parametrize(
    ("package", "old", "new", "line", "before", "after"),
    [
        # single quotes, spaces around ==, a marker
        ("jinja2", "2.10", "2.11.3", 15, """'jinja2 == 2.10 ; python_version >= "3.8"'""",
         """'jinja2 == 2.11.3 ; python_version >= "3.8"'"""),
        # escapes after the version
        ("ruamel-yaml", "0.17.21", "0.17.22", 16,
         '"ruamel.yaml==0.17.21; python_version < \\"3.13\\""',
         '"ruamel.yaml==0.17.22; python_version < \\"3.13\\""'),
        # optional dependencies, several strings on one line
        ("jinja2", "2.10", "2.11.3", 21, '["sphinx==7.2.6", "jinja2==2.10"]',
         '["sphinx==7.2.6", "jinja2==2.11.3"]'),
        ("django", "3.2.12", "3.2.25", 13, '"Django[argon2]==3.2.12"',
         '"Django[argon2]==3.2.25"'),
    ],
)
def test_pep621_variants(tmp_path, package, old, new, line, before, after):
    text = read("pyproject-pep621.toml")
    edit = upgrade(text, "pyproject.toml", package, old, new, line=line)

    assert edit.text == replace_once(text, before, after)
    assert edit.changed_lines == [line]
    assert_only_pin_moved(tmp_path, "pyproject.toml", text, edit.text, package, old, new,
                          {line})


def test_pep621_range_is_not_a_pin():
    text = read("pyproject-pep621.toml")
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(text, "pyproject.toml", "requests", "2.25.0", "2.31.0", line=17)
    assert raised.value.reason == (
        "pyproject.toml:17: `requests>=2.25,<3` is not an exact pin (a single == or ===), so "
        "there is no version to replace; change it to exclude 2.25.0 (e.g. >=2.31.0) by hand")


def test_pep621_package_not_declared():
    text = read("pyproject-pep621.toml")
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(text, "services/billing/pyproject.toml", "markupsafe", "2.1.3", "2.1.4",
                line=None)
    assert raised.value.reason == (
        "markupsafe 2.1.3 is not declared in services/billing/pyproject.toml: no requirement "
        "for markupsafe was found there (it may come in transitively or from another "
        "manifest)")


def test_version_written_with_escapes_is_left_to_a_person():
    text = '[project]\nname = "x"\ndependencies = ["six==1\\u002e15.0"]\n'
    assert tomllib.loads(text)["project"]["dependencies"] == ["six==1.15.0"]
    with pytest.raises(ManualPatchRequired, match="written with escapes"):
        upgrade(text, "pyproject.toml", "six", "1.15.0", "1.16.0", line=3)


def test_invalid_toml():
    with pytest.raises(ManualPatchRequired, match=r"^pyproject.toml is not valid TOML \("):
        upgrade("[project\n", "pyproject.toml", "six", "1.15.0", "1.16.0", line=1)


def test_pyproject_with_crlf_multiline_strings_and_arrays_of_tables():
    text = ('[project]\r\nname = "x"\r\ndescription = """\r\nA "tricky" \\\r\n  one"""\r\n'
            '[[project.authors]]\r\nname = "A"\r\n[[project.authors]]\r\nname = "B"\r\n'
            '[project.optional-dependencies]\r\n'
            "dev = [ # comment [\r\n  'six==1.15.0' , # ]\r\n]")
    edit = upgrade(text, "pyproject.toml", "six", "1.15.0", "1.16.0", line=12)
    assert edit.text == text.replace("'six==1.15.0'", "'six==1.16.0'")
    assert edit.changed_lines == [12]


@pytest.mark.parametrize(
    "text",
    ['[project]\nname = "x"\ndependencies = ["six==1.15.0"]\n',
     '[tool.poetry.dependencies]\nsix = "1.15.0"\n'],
)
def test_pyproject_result_that_would_not_pin_the_new_version_is_refused(text):
    with pytest.raises(ManualPatchRequired, match=r"does not pin six 1\.16\.0-; upgrade it"):
        upgrade(text, "pyproject.toml", "six", "1.15.0", "1.16.0-", line=None)


# --- pyproject.toml: Poetry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("package", "old", "new", "line", "before", "after", "changed"),
    [
        ("pyyaml", "5.3.1", "5.4", 12, 'PyYAML = "5.3.1"\n', 'PyYAML = "5.4"\n', 12),
        ("jinja2", "2.10", "2.11.3", 13, 'jinja2 = "==2.10"', 'jinja2 = "==2.11.3"', 13),
        ("django", "3.2.12", "3.2.25", 11, '{version = "3.2.12", extras = ["argon2"]}',
         '{version = "3.2.25", extras = ["argon2"]}', 11),
        ("ruamel-yaml", "0.17.21", "0.17.22", 15, '{ version = "=0.17.21", python',
         '{ version = "=0.17.22", python', 15),
        ("pyyaml", "5.3.1", "5.4", 20, 'pyyaml = "5.3.1"   # fixtures are YAML',
         'pyyaml = "5.4"   # fixtures are YAML', 20),
        # a dotted table: the hint is the header line, the version sits below it
        ("sphinx", "7.2.6", "7.2.7", 25, 'version = "7.2.6"', 'version = "7.2.7"', 26),
    ],
)
def test_poetry_variants(tmp_path, package, old, new, line, before, after, changed):
    text = read("pyproject-poetry.toml")
    edit = upgrade(text, "pyproject.toml", package, old, new, line=line)

    assert edit.text == replace_once(text, before, after)
    assert edit.changed_lines == [changed]
    assert edit.notes == [POETRY_LOCK_NOTE.format(pkg=package, new=new)]
    assert_only_pin_moved(tmp_path, "pyproject.toml", text, edit.text, package, old, new,
                          {line})


def test_poetry_wrong_hint_finds_the_pin_nearest_to_it():
    text = read("pyproject-poetry.toml")
    edit = upgrade(text, "pyproject.toml", "pyyaml", "5.3.1", "5.4", line=19)
    assert edit.text == replace_once(text, 'pyyaml = "5.3.1"', 'pyyaml = "5.4"')
    assert edit.notes[0] == ("pyproject.toml:19: no pyyaml 5.3.1 pin on that line; upgraded "
                             "the pin on line 20 instead")
    assert tomllib.loads(edit.text)["tool"]["poetry"]["group"]["dev"]["dependencies"][
        "pyyaml"] == "5.4"


@pytest.mark.parametrize(
    ("package", "line", "reason"),
    [
        ("requests", 14, 'pyproject.toml:14: `requests = "^2.25"` is not an exact Poetry pin, '
         "so there is no version to replace; change it to exclude 2.25.0 (e.g. >=2.31.0) by "
         "hand"),
        ("payments-sdk", 16, "pyproject.toml:16: `payments-sdk = {'git': "
         "'https://github.com/example/payments-sdk.git', 'tag': 'v1.4.0'}` is a git "
         "dependency, so there is no version to replace; change it to exclude 2.25.0 (e.g. "
         ">=2.31.0) by hand"),
    ],
)
def test_poetry_entries_that_are_not_pins(package, line, reason):
    text = read("pyproject-poetry.toml")
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(text, "pyproject.toml", package, "2.25.0", "2.31.0", line=line)
    assert raised.value.reason == reason


# --- lock files, SBOMs and other files ------------------------------------------------


def test_poetry_lock_is_never_edited():
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade(read("poetry.lock"), "poetry.lock", "pyyaml", "5.3.1", "5.4", line=33)
    assert raised.value.reason == (
        "poetry.lock pins pyyaml 5.3.1 with hashes and a content hash; run "
        "`poetry update pyyaml` (or `poetry add pyyaml@^5.4`) to upgrade it safely")


@pytest.mark.parametrize(
    ("path", "package", "reason"),
    [
        ("Pipfile.lock", "pyyaml",
         "Pipfile.lock pins pyyaml 5.3.1 with hashes and a hash of the Pipfile; run "
         "`pipenv update pyyaml` (after allowing 5.4 in the Pipfile) to upgrade it safely"),
        ("backend/uv.lock", "pyyaml",
         "backend/uv.lock pins pyyaml 5.3.1 with hashes; run `uv lock --upgrade-package "
         "pyyaml` (or `uv lock --upgrade-package pyyaml==5.4`) to upgrade it safely"),
        ("web/package-lock.json", "lodash",
         "web/package-lock.json pins lodash 5.3.1 with an integrity hash inside a resolved "
         "tree; run `npm install lodash@5.4` (for a transitive dependency: `npm update "
         "lodash`, or an `overrides` entry in package.json) to upgrade it safely"),
        ("npm-shrinkwrap.json", "lodash",
         "npm-shrinkwrap.json pins lodash 5.3.1 with an integrity hash inside a resolved "
         "tree; run `npm install lodash@5.4` (for a transitive dependency: `npm update "
         "lodash`, or an `overrides` entry in package.json) to upgrade it safely"),
        ("bom.json", "pyyaml",
         "bom.json is an SBOM: an SBOM describes, it does not declare; upgrade pyyaml to 5.4 "
         "in the manifest it was generated from, then regenerate the SBOM"),
        ("dist/sbom.json", "pyyaml",
         "dist/sbom.json is an SBOM: an SBOM describes, it does not declare; upgrade pyyaml "
         "to 5.4 in the manifest it was generated from, then regenerate the SBOM"),
        ("release/app.cdx.json", "pyyaml",
         "release/app.cdx.json is an SBOM: an SBOM describes, it does not declare; upgrade "
         "pyyaml to 5.4 in the manifest it was generated from, then regenerate the SBOM"),
        ("setup.py", "pyyaml",
         "setup.py: setup.py (Python code) cannot be edited automatically; upgrade pyyaml "
         "from 5.3.1 to 5.4 by hand"),
        ("environment.yml", "pyyaml",
         "environment.yml: a .yml file cannot be edited automatically; upgrade pyyaml from "
         "5.3.1 to 5.4 by hand"),
        ("Pipfile", "pyyaml",
         "Pipfile: a Pipfile cannot be edited automatically; upgrade pyyaml from 5.3.1 to 5.4 "
         "by hand"),
    ],
)
def test_files_that_are_not_edited(path, package, reason):
    with pytest.raises(ManualPatchRequired) as raised:
        upgrade("", path, package, "5.3.1", "5.4", line=1)
    assert raised.value.reason == reason
    assert str(raised.value) == reason


# --- the editor reads manifests with the inventory's own rules --------------------------
# (apps.inventory.manifests.pip_format / .lines / .pyproject: one copy of each rule; these
# are the cases where the editor's former copy read a file differently.)

INVENTORY_DATA = Path(__file__).parents[1] / "inventory" / "data"
READABLE = [
    DATA / "requirements-compiled.txt", DATA / "requirements-handwritten.txt",
    DATA / "pyproject-pep621.toml", DATA / "pyproject-poetry.toml",
    *(INVENTORY_DATA / name for name in (
        "mixed/requirements.txt", "mixed/requirements/base.txt", "pip-compile/requirements.txt",
        "pep621/pyproject.toml", "poetry1/pyproject.toml", "poetry2/pyproject.toml")),
]


@pytest.mark.parametrize("source", READABLE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_pin_the_inventory_reads_is_found_by_the_editor_on_its_line(tmp_path, source):
    """What the scan reports (package, version, line) is what the editor finds there, and
    the scan of the edited file differs by that pin only (and lines moved up when --hash
    lines were removed)."""
    name = "pyproject.toml" if source.suffix == ".toml" else "requirements.txt"
    text = source.read_bytes().decode("utf-8")
    deps, errors = parsed(tmp_path / "source", name, text)
    pins = [d for d in deps if d.version is not None and d.manifest_path == name]
    assert pins
    for number, dep in enumerate(pins):
        edit = upgrade(text, name, dep.name, dep.version, "99.0", line=dep.line)
        assert not any("on that line" in note for note in edit.notes), (dep, edit.notes)
        new_deps, new_errors = parsed(tmp_path / str(number), name, edit.text)
        assert [reason for _, reason in new_errors] == [reason for _, reason in errors]
        moved = [dataclasses.replace(
            d, version="99.0", hashes=(), specifier=d.specifier.replace(d.version, "99.0"))
            if d == dep else d for d in deps]
        assert [dataclasses.replace(d, line=None) for d in new_deps] == [
            dataclasses.replace(d, line=None) for d in moved]
        assert new_deps[deps.index(dep)].line == dep.line


def test_carriage_returns_before_a_newline_belong_to_the_line_ending(tmp_path):
    r"""A stray "\r\r\n" (a CRLF file edited with a tool that added a CR) ends the line as
    "\r\n" does, so the backslash before it still continues the requirement; the
    editor's former copy read `six==1.15.0 \` as a broken requirement."""
    text = "six==1.15.0 \\\r\r\n    --hash=sha256:aaaa\r\r\nidna==2.0\r\r\n"
    edit = upgrade(text, "requirements.txt", "six", "1.15.0", "1.16.0", line=1)
    assert edit.text == "six==1.16.0\r\r\nidna==2.0\r\r\n"
    assert edit.changed_lines == [1, 2]
    assert_only_pin_moved(tmp_path, "requirements.txt", text, edit.text, "six", "1.15.0",
                          "1.16.0", {1})


def test_a_long_run_of_spaces_is_read_in_linear_time():
    """The former copy searched comments with pip's ``(^|\\s+)#.*$``: quadratic in a run
    of spaces not followed by "#" (8,000 spaces took 0.2 s, 60,000 about 11 s)."""
    text = "six==1.15.0" + " " * 60_000 + "--hash=sha256:aa\n"
    started = time.perf_counter()
    edit = upgrade(text, "requirements.txt", "six", "1.15.0", "1.16.0", line=1)
    assert time.perf_counter() - started < 2
    assert edit.text == "six==1.16.0\n"


def test_arbitrary_equality_with_a_star_is_a_pin_as_the_inventory_reads_it(tmp_path):
    """``===`` compares strings, so its "*" is no wildcard: the inventory records the
    version "1.0.*"; the former copy refused it as "not an exact pin"."""
    text = "foo===1.0.*\n"
    edit = upgrade(text, "requirements.txt", "foo", "1.0.*", "1.0.5", line=1)
    assert edit.text == "foo===1.0.5\n"
    assert_only_pin_moved(tmp_path, "requirements.txt", text, edit.text, "foo", "1.0.*",
                          "1.0.5", {1})


def test_a_requirement_with_options_pip_rejects_is_not_a_declaration(tmp_path):
    """The inventory reports the line as an error, not a dependency (pip rejects the
    file); the former copy upgraded it and dropped the bare ``--hash``."""
    text = "six==1.15.0 --hash\n"
    assert parsed(tmp_path / "read", "requirements.txt", text) == (
        [], [(1, "invalid option: --hash option requires 1 argument")])
    with pytest.raises(ManualPatchRequired, match="six 1.15.0 is not declared"):
        upgrade(text, "requirements.txt", "six", "1.15.0", "1.16.0", line=1)
