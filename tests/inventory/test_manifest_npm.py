"""npm package-lock.json v1, v2 and v3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from apps.inventory.manifests import parse_manifest

DATA = Path(__file__).parent / "data"


def rows(root: Path, name: str = "package-lock.json") -> list[tuple]:
    manifest = parse_manifest(root, root / name)
    assert manifest.errors == []
    assert manifest.kind == "package-lock.json"
    assert all(d.ecosystem == "npm" and d.manifest_path == name for d in manifest.dependencies)
    return [(d.name, d.version, d.line, d.direct) for d in manifest.dependencies]


def test_v1_nested_tree_with_package_json() -> None:
    assert rows(DATA / "npm-v1") == [
        ("@babel/runtime", "7.4.3", 7, True),
        ("accepts", "1.3.5", 15, False),
        ("debug", "2.6.9", 24, False),
        ("express", "4.16.4", 32, True),
        ("qs", "6.5.2", 42, False),  # nested under express
        ("lodash", "4.17.11", 49, True),
        ("mime-types", "2.1.24", 54, False),
        ("mocha", "6.1.4", 59, True),  # devDependencies count as direct
        ("debug", "3.2.6", 68, False),  # nested copy under mocha
        ("ms", "2.1.1", 77, False),
        ("ms", "2.0.0", 85, False),
        ("left-pad", "1.3.0", 90, True),  # "my-alias": "npm:left-pad@1.3.0"
        ("negotiator", "0.6.1", 95, False),
        ("regenerator-runtime", "0.13.2", 100, False),
        ("some-git-dep", None, 105, True),  # git version: not semver, unpinned
    ]


def test_v1_specifiers_and_integrity() -> None:
    root = DATA / "npm-v1"
    deps = {(d.name, d.line): d for d in parse_manifest(root, root / "package-lock.json")
            .dependencies}
    assert deps["express", 32].specifier == "4.16.4"
    assert deps["express", 32].hashes[0].startswith("sha512-")
    assert deps["negotiator", 95].hashes[0].startswith("sha1-")
    assert deps["some-git-dep", 105].specifier.startswith("github:acme/some-git-dep#")
    assert deps["@babel/runtime", 7].normalised_name == "@babel/runtime"


def test_v1_without_package_json_uses_graph_roots(tmp_path: Path) -> None:
    shutil.copy(DATA / "npm-v1" / "package-lock.json", tmp_path / "package-lock.json")
    direct = {name for name, _, _, is_direct in rows(tmp_path) if is_direct}
    # Top-level entries nothing else requires. ("lodash", "mocha", ... are roots.)
    assert direct == {"@babel/runtime", "express", "lodash", "mocha", "left-pad",
                      "some-git-dep"}


def test_v2_uses_packages_map_not_legacy_tree() -> None:
    assert rows(DATA / "npm-v2") == [
        ("@types/node", "16.4.0", 19, False),
        ("debug", "2.6.9", 25, False),
        ("express", "4.17.1", 33, True),
        ("qs", "6.7.0", 45, False),  # node_modules/express/node_modules/qs
        ("jest-mock", "27.0.6", 53, True),  # root devDependencies
        ("lodash", "4.17.20", 62, True),
        ("ms", "2.0.0", 67, False),
    ]


def test_v3_workspaces_links_aliases_and_nesting() -> None:
    assert rows(DATA / "npm-v3") == [
        # node_modules/@acme/ui is a link to packages/ui: skipped, as is packages/ui.
        ("js-tokens", "4.0.0", 25, False),
        ("lodash", "4.17.21", 30, True),  # declared by the packages/ui workspace
        ("loose-envify", "1.4.0", 35, False),
        ("react", "18.2.0", 46, True),
        ("string-width", "4.2.3", 57, True),  # alias string-width-cjs -> string-width
        ("typescript", "5.3.3", 63, True),
        ("semver", "6.3.1", 80, True),  # packages/ui/node_modules/semver, ui declares it
    ]


def test_mixed_case_name_is_lowered(tmp_path: Path) -> None:
    lock = {"lockfileVersion": 3, "packages": {
        "": {"dependencies": {"JSONStream": "^1.3.5"}},
        "node_modules/JSONStream": {"version": "1.3.5"},
        "node_modules/a/node_modules/@Scope/Thing": {"version": "not-semver"},
    }}
    (tmp_path / "package-lock.json").write_text(json.dumps(lock, indent=2))
    deps = parse_manifest(tmp_path, tmp_path / "package-lock.json").dependencies
    assert [(d.name, d.normalised_name, d.version, d.specifier, d.direct) for d in deps] == [
        ("JSONStream", "jsonstream", "1.3.5", "1.3.5", True),
        ("@Scope/Thing", "@scope/thing", None, "not-semver", False),
    ]


def test_invalid_json_and_odd_shapes(tmp_path: Path) -> None:
    (tmp_path / "package-lock.json").write_text('{"lockfileVersion": 2, "packages": {')
    manifest = parse_manifest(tmp_path, tmp_path / "package-lock.json")
    assert manifest.dependencies == []
    assert [e.manifest_path for e in manifest.errors] == ["package-lock.json"]
    assert manifest.errors[0].reason.startswith("invalid JSON: Expecting")

    (tmp_path / "package-lock.json").write_text(
        '{"lockfileVersion": 3, "packages": {"node_modules/x": "oops"}}')
    manifest = parse_manifest(tmp_path, tmp_path / "package-lock.json")
    assert manifest.dependencies == []
    assert [(e.line, e.reason) for e in manifest.errors] == [
        (None, "entry 'node_modules/x' is not an object")]
