"""Parse npm lock files: ``package-lock.json`` (lockfileVersion 1, 2, 3) and npm-shrinkwrap.json.

Format: https://docs.npmjs.com/cli/configuring-npm/package-lock-json

* v2/v3 use the ``packages`` map keyed by install location. ``node_modules/a``
  and nested ``node_modules/a/node_modules/b`` name packages ``a`` and ``b``
  (an entry's own ``name`` wins: that is how npm records ``npm:`` aliases).
  ``link: true`` entries point at workspace folders and are skipped, as are the
  folders themselves. A package is direct when it is installed at the top of the
  root (or of a workspace folder) and the root ``""`` entry or a workspace entry
  lists it in ``dependencies``/``devDependencies``/``optionalDependencies``/
  ``peerDependencies``. v2 files also carry the v1 tree for old npm; it is ignored.
* v1 uses the nested ``dependencies`` tree. Direct means top-level and declared
  in the sibling package.json. Without a readable package.json we fall back to
  top-level entries that no other entry ``requires`` (the roots of the graph),
  which misses direct dependencies that something else also requires.
* Lock versions are exact. A version that is not valid semver (a git URL or
  ``file:`` path in v1) is recorded unpinned with the raw text as specifier.
  ParsedDependency has no dev/optional field, so dev dependencies are recorded
  like the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import semver

from .discovery import NPM_LOCK
from .lines import JsonPath, json_container_lines
from .records import (
    NPM,
    ManifestError,
    ParsedDependency,
    ParsedManifest,
    load_json,
    normalise_name,
    read_text,
    relative_posix,
)

_DEPENDENCY_MAPS = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
_NODE_MODULES = "node_modules/"


def _declared(entry: Any) -> set[str]:
    """Names in a package.json-shaped object's dependency maps."""
    if not isinstance(entry, dict):
        return set()
    return {name for key in _DEPENDENCY_MAPS if isinstance(entry.get(key), dict)
            for name in entry[key]}


def _package_json_names(path: Path) -> set[str] | None:
    try:
        return _declared(json.loads(read_text(path)))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def _integrity(entry: dict[str, Any]) -> tuple[str, ...]:
    """Subresource-integrity strings ("sha512-..."); npm separates several with spaces."""
    value = entry.get("integrity")
    return tuple(value.split()) if isinstance(value, str) else ()


def _dependency(name: str, raw_version: Any, rel: str, line: int | None, direct: bool,
                entry: dict[str, Any]) -> ParsedDependency:
    raw = raw_version if isinstance(raw_version, str) else ""
    version = raw if raw and semver.Version.is_valid(raw) else None
    return ParsedDependency(NPM, name, normalise_name(NPM, name), version, raw, rel, line,
                            direct, hashes=_integrity(entry))


def _split_install_path(key: str) -> tuple[str, str] | None:
    """``"a/node_modules/@s/b"`` -> ``("a", "@s/b")``; None for non-node_modules keys."""
    index = key.rfind(_NODE_MODULES)
    if index < 0 or (index > 0 and key[index - 1] != "/"):
        return None
    return key[:index].rstrip("/"), key[index + len(_NODE_MODULES):]


def _parse_packages(packages: dict[str, Any], rel: str, lines: dict[JsonPath, int],
                    errors: list[ManifestError]) -> list[ParsedDependency]:
    declared = _declared(packages.get(""))
    for key, entry in packages.items():
        if key and _split_install_path(key) is None:
            declared |= _declared(entry)  # a workspace folder's own package.json
    deps: list[ParsedDependency] = []
    for key, entry in packages.items():
        split = _split_install_path(key) if key else None
        if split is None:
            continue  # the root "" or a workspace folder: the project's own code
        line = lines.get(("packages", key))
        if not isinstance(entry, dict):
            errors.append(ManifestError(rel, line, f"entry {key!r} is not an object"))
            continue
        if entry.get("link"):
            continue  # symlink to a workspace folder, not an installed package
        parent, install_name = split
        name = entry.get("name") if isinstance(entry.get("name"), str) else install_name
        top_level = "node_modules" not in parent.split("/")
        direct = top_level and install_name in declared
        deps.append(_dependency(name, entry.get("version"), rel, line, direct, entry))
    return deps


def _required_names(tree: dict[str, Any]) -> set[str]:
    """Every name some v1 entry ``requires``, at any depth."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        for entry in stack.pop().values():
            if isinstance(entry, dict):
                if isinstance(entry.get("requires"), dict):
                    names.update(entry["requires"])
                if isinstance(entry.get("dependencies"), dict):
                    stack.append(entry["dependencies"])
    return names


def _parse_v1(tree: dict[str, Any], rel: str, lines: dict[JsonPath, int],
              declared: set[str] | None, errors: list[ManifestError]) -> list[ParsedDependency]:
    required = _required_names(tree) if declared is None else set()
    deps: list[ParsedDependency] = []
    # Depth-first in document order, with an explicit stack (trees can be deep).
    stack: list[tuple[JsonPath, Any]] = [(("dependencies",), iter(tree.items()))]
    while stack:
        path, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        name, entry = item
        line = lines.get((*path, name))
        if not isinstance(entry, dict):
            errors.append(ManifestError(rel, line, f"entry {name!r} is not an object"))
            continue
        version = entry.get("version")
        real_name = name
        if isinstance(version, str) and version.startswith("npm:"):
            # Alias: "npm:<real-name>@<version>" (the real name may be scoped).
            real_name, _, version = version[4:].rpartition("@")
            real_name = real_name or name
        top_level = len(path) == 1
        direct = top_level and (name in declared if declared is not None
                                else name not in required)
        deps.append(_dependency(real_name, version, rel, line, direct, entry))
        if isinstance(entry.get("dependencies"), dict):
            stack.append(((*path, name, "dependencies"), iter(entry["dependencies"].items())))
    return deps


def parse_package_lock(root: Path, path: Path) -> ParsedManifest:
    """Parse an npm package-lock.json or npm-shrinkwrap.json."""
    loaded = load_json(root, path, NPM_LOCK)
    if isinstance(loaded, ParsedManifest):
        return loaded
    text, data = loaded
    rel = relative_posix(root, path)
    errors: list[ManifestError] = []
    lines = json_container_lines(text)
    if isinstance(data.get("packages"), dict):
        deps = _parse_packages(data["packages"], rel, lines, errors)
    elif isinstance(data.get("dependencies"), dict):
        declared = _package_json_names(path.parent / "package.json")
        deps = _parse_v1(data["dependencies"], rel, lines, declared, errors)
    else:
        deps = []
    return ParsedManifest(rel, NPM_LOCK, deps, errors)
