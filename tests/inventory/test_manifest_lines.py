"""The JSON/TOML key -> line indexes used for lock-file line numbers."""

from __future__ import annotations

import json
import time

from apps.inventory.manifests.lines import json_container_lines, toml_lines


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


def test_toml_lines_array_tables_subtables_and_strings() -> None:
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
    index = toml_lines(text)
    assert index.keys[("package", 0, "name")] == 7
    assert index.keys[("package", 0, "dependencies", "b")] == 9
    assert index.keys[("package", 1, "name")] == 11
    assert ("package", 2, "name") not in index.keys
    assert index.strings[("project", "dependencies")] == [
        ("x==1", 14), ("y", 15), ("z[extra]>=2", 16)]
    assert index.strings[("project", "other")] == [("p", 18)]
    assert index.keys[("project", "quoted.key")] == 19
    assert index.string_line(("project", "dependencies"), 1, "y") == 15
    assert index.string_line(("project", "dependencies"), 0, "y") == 15  # found by value
    assert index.string_line(("project", "dependencies"), 0, "nope") is None
