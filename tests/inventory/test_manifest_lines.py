"""The JSON/TOML key -> line indexes used for lock-file line numbers."""

from __future__ import annotations

import json
import time
import tomllib

from apps.inventory.manifests.lines import json_container_lines, toml_positions


def test_json_container_lines_paths_and_escapes() -> None:
    text = json.dumps({
        "default": {"we\"ird": {"version": "==1"}, "plain": {}},
        "list": [{"a": 1}, [2], "x", {"b": {"c": []}}],
        "str": "{ not a container",
    }, indent=2)
    index = json_container_lines(text)
    lines = text.split("\n")
    assert all(1 <= line <= len(lines) for line in index.values())
    assert lines[index[("default", 'we"ird')] - 1].strip().startswith('"we\\"ird": {')
    assert lines[index[("default", "plain")] - 1].strip() == '"plain": {}'
    assert index[("list", 0)] < index[("list", 1)] < index[("list", 3)]
    assert ("list", 2) not in index  # scalars are not indexed
    assert lines[index[("list", 3, "b", "c")] - 1].strip() == '"c": []'


def test_json_index_is_linear() -> None:
    packages = {f"node_modules/pkg-{i}": {"version": f"1.0.{i}"} for i in range(20000)}
    text = json.dumps({"packages": packages}, indent=2)
    started = time.perf_counter()
    index = json_container_lines(text)
    assert time.perf_counter() - started < 5
    assert index[("packages", "node_modules/pkg-19999")] == 2 + 19999 * 3 + 1


def test_toml_positions_array_tables_subtables_and_strings() -> None:
    text = "\n".join([
        'title = "x"',                       # 1
        'doc = """',                         # 2
        "[[package]]",                       # 3 (inside a multi-line string)
        'name = "fake"',                     # 4
        '"""',                               # 5
        "[[package]]",                       # 6
        'name = "a"  # comment',             # 7
        "[package.dependencies]",            # 8
        'b = ">=1"',                         # 9
        "[[ package ]]",                     # 10
        "name = 'c'",                        # 11
        "[project]",                         # 12
        "dependencies = [",                  # 13
        '  "x==1",  # has [brackets]',       # 14
        "  'y',",                            # 15
        '  "z[extra]>=2",',                  # 16
        "]",                                 # 17
        'other = ["p", {q = "r"}]',          # 18
        '"quoted.key" = 1',                  # 19
    ])
    index = toml_positions(text)
    assert index.error is None
    assert index.key_lines[("package", 0, "name")] == 7
    assert index.key_lines[("package", 0, "dependencies", "b")] == 9
    assert index.key_lines[("package", 1, "name")] == 11
    assert ("package", 2, "name") not in index.key_lines
    deps = ("project", "dependencies")
    assert {path[-1]: (found.value, index.line_of(found.start))
            for path, found in index.strings.items() if path[:-1] == deps} == {
        0: ("x==1", 14), 1: ("y", 15), 2: ("z[extra]>=2", 16)}
    assert index.strings[("project", "other", 0)].value == "p"
    assert index.strings[("project", "other", 1, "q")].value == "r"  # inside an inline table
    assert index.key_lines[("project", "other", 1, "q")] == 18
    assert index.key_lines[("project", "quoted.key")] == 19
    assert index.string_line((*deps, 1), "y") == 15
    assert index.string_line((*deps, 0), "y") is None  # checked against the value
    assert index.string_line((*deps, 5), "y") is None


def test_toml_positions_decode_like_tomllib() -> None:
    r"""Strings decode to tomllib's values (escapes, a CRLF inside a multi-line string read
    as "\n", quotes closing a multi-line string) with raw offsets back into the text."""
    text = ('a = "x\\ty \\U0001F600"\r\n'
            'b = """\r\nTwo\r\nlines"""\r\n'
            "c = '''q''''' # comment\r\n"
            'd = "plain"\r\n'
            'e = """line \\\r\n    joined"""\r\n')
    document = tomllib.loads(text)
    index = toml_positions(text)
    assert index.error is None
    assert {path[0]: found.value for path, found in index.strings.items()} == document
    plain = index.strings[("d",)]
    assert text[plain.raw_index(0):plain.raw_index(len(plain.value))] == "plain"
    escaped = index.strings[("a",)]
    assert text[escaped.raw_index(4):escaped.raw_index(5)] == "\\U0001F600"
    assert [index.key_lines[(key,)] for key in "abcde"] == [1, 2, 5, 6, 7]


def test_toml_positions_keep_what_they_found_before_a_layout_they_do_not_follow() -> None:
    index = toml_positions('a = "x"\nb = ]\nc = "y"\n')  # not TOML: never passed in practice
    assert index.error == "value expected at 12"
    assert index.key_lines == {("a",): 1, ("b",): 2}
    assert toml_positions('a = "x"\n', strings=False).strings == {}
