"""Parse CycloneDX JSON SBOMs (as written by ``cyclonedx-py``, ``cyclonedx-npm`` and others).

Spec: https://cyclonedx.org/docs/1.5/json/

The document is loaded with ``cyclonedx-python-lib`` (``Bom.from_json``) so the
model's own deserialisation rules apply. When the library rejects a document
(e.g. one malformed purl, or a field it does not model) we fall back to walking
the plain JSON, so one bad component does not hide all the others; in that
mode a bad purl is reported as an error at its component's line.

Only components whose package URL has type ``pypi`` or ``npm`` are recorded
(the ecosystems we track); nested ``components`` are included. Versions in an
SBOM describe what is installed, so they are recorded as exact versions. A
component is direct when the SBOM's dependency graph lists it in the
``dependsOn`` of ``metadata.component``; when there is no graph entry for the
root we cannot tell, and every component is reported direct.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.model.bom import Bom
from packageurl import PackageURL

from .discovery import CYCLONEDX
from .lines import JsonPath, json_container_lines
from .records import (
    NPM,
    PYPI,
    ManifestError,
    ParsedDependency,
    ParsedManifest,
    load_json,
    normalise_name,
    relative_posix,
)

_ECOSYSTEMS = {"pypi": PYPI, "npm": NPM}


@dataclass(frozen=True)
class _Component:
    name: str
    version: str | None
    purl: PackageURL
    bom_ref: str | None
    hashes: tuple[str, ...]


@dataclass
class _Bom:
    components: list[_Component]
    root_ref: str | None
    graph: dict[str, set[str]]


def _hash_prefix(algorithm: str) -> str:
    """CycloneDX "SHA-256" -> "sha256", the spelling pip and lock files use."""
    lower = algorithm.lower()
    return "sha" + lower[4:] if lower.startswith("sha-") else lower


def _from_library(data: dict[str, Any]) -> _Bom:
    with warnings.catch_warnings():
        # The library warns about fields deprecated in newer spec versions
        # (e.g. the legacy metadata.tools array cyclonedx-py 4 writes).
        warnings.simplefilter("ignore")
        bom = Bom.from_json(data)
    if bom is None:
        raise ValueError("empty BOM")
    components: list[_Component] = []
    pending = list(bom.components)
    while pending:
        component = pending.pop()
        pending.extend(component.components)
        if component.purl is None:
            continue
        components.append(_Component(
            name=component.name,
            version=component.version,
            purl=component.purl,
            bom_ref=component.bom_ref.value,
            hashes=tuple(f"{_hash_prefix(h.alg.value)}:{h.content}" for h in component.hashes),
        ))
    root = bom.metadata.component
    graph = {str(dep.ref.value): {str(child.ref.value) for child in dep.dependencies}
             for dep in bom.dependencies}
    return _Bom(components, root.bom_ref.value if root is not None else None, graph)


def _raw_components(data: dict[str, Any]) -> list[tuple[JsonPath, dict[str, Any]]]:
    """Every component object (nested ones too) with its JSON path."""
    found: list[tuple[JsonPath, dict[str, Any]]] = []
    pending: list[tuple[JsonPath, Any]] = [(("components",), data.get("components"))]
    while pending:
        path, items = pending.pop()
        if not isinstance(items, list):
            continue
        for position, item in enumerate(items):
            if isinstance(item, dict):
                found.append(((*path, position), item))
                pending.append(((*path, position, "components"), item.get("components")))
    return found


def _from_plain(data: dict[str, Any], rel: str, lines: dict[JsonPath, int],
                errors: list[ManifestError]) -> _Bom:
    components: list[_Component] = []
    for path, raw in _raw_components(data):
        purl_text = raw.get("purl")
        if not isinstance(purl_text, str):
            continue
        try:
            purl = PackageURL.from_string(purl_text)
        except ValueError as exc:
            errors.append(ManifestError(rel, lines.get(path), f"invalid purl {purl_text!r}: {exc}"))
            continue
        hashes = tuple(
            f"{_hash_prefix(str(h.get('alg', '')))}:{h.get('content', '')}"
            for h in raw.get("hashes", []) if isinstance(h, dict))
        name = raw.get("name")
        version = raw.get("version")
        bom_ref = raw.get("bom-ref")
        components.append(_Component(
            name=name if isinstance(name, str) else purl.name,
            version=version if isinstance(version, str) else None,
            purl=purl,
            bom_ref=bom_ref if isinstance(bom_ref, str) else None,
            hashes=hashes,
        ))
    root = data.get("metadata", {}).get("component") if isinstance(
        data.get("metadata"), dict) else None
    root_ref = root.get("bom-ref") if isinstance(root, dict) else None
    graph: dict[str, set[str]] = {}
    for dep in data.get("dependencies", []) if isinstance(data.get("dependencies"), list) else []:
        if isinstance(dep, dict) and isinstance(dep.get("ref"), str):
            children = dep.get("dependsOn", [])
            graph[dep["ref"]] = {c for c in children if isinstance(c, str)} if isinstance(
                children, list) else set()
    return _Bom(components, root_ref if isinstance(root_ref, str) else None, graph)


def parse_cyclonedx(root: Path, path: Path) -> ParsedManifest:
    """Parse the pypi and npm components of a CycloneDX JSON SBOM."""
    loaded = load_json(root, path, CYCLONEDX)
    if isinstance(loaded, ParsedManifest):
        return loaded
    text, data = loaded
    rel = relative_posix(root, path)
    if data.get("bomFormat") != "CycloneDX":
        return ParsedManifest(rel, CYCLONEDX, [], [
            ManifestError(rel, None, 'not a CycloneDX BOM (no "bomFormat": "CycloneDX")')])
    if not isinstance(data.get("components", []), list):
        return ParsedManifest(rel, CYCLONEDX, [], [
            ManifestError(rel, None, '"components" must be an array')])
    lines = json_container_lines(text)
    errors: list[ManifestError] = []
    try:
        bom = _from_library(data)
    except Exception:  # any library failure: fall back to the plain JSON
        bom = _from_plain(data, rel, lines, errors)
    # Lines: components are found again in the raw JSON by bom-ref, else by purl.
    by_ref: dict[str, int] = {}
    by_purl: dict[str, int] = {}
    for raw_path, raw in _raw_components(data):
        line = lines.get(raw_path)
        if line is not None:
            if isinstance(raw.get("bom-ref"), str):
                by_ref.setdefault(raw["bom-ref"], line)
            if isinstance(raw.get("purl"), str):
                by_purl.setdefault(raw["purl"], line)
    direct_refs = bom.graph.get(bom.root_ref) if bom.root_ref is not None else None
    deps: list[ParsedDependency] = []
    for component in bom.components:
        ecosystem = _ECOSYSTEMS.get(component.purl.type)
        if ecosystem is None:
            continue
        if ecosystem == NPM:
            # npm scopes live in the purl namespace ("%40scope" decodes to "@scope").
            namespace = component.purl.namespace
            name = f"{namespace}/{component.purl.name}" if namespace else component.purl.name
        else:
            name = component.name or component.purl.name
        version = component.version or component.purl.version or None
        specifier = "" if version is None else (f"=={version}" if ecosystem == PYPI else version)
        line = by_ref.get(component.bom_ref or "") or by_purl.get(component.purl.to_string())
        direct = True if direct_refs is None else component.bom_ref in direct_refs
        deps.append(ParsedDependency(ecosystem, name, normalise_name(ecosystem, name), version,
                                     specifier, rel, line, direct, hashes=component.hashes))
    deps.sort(key=lambda d: (d.line is None, d.line or 0, d.normalised_name))
    return ParsedManifest(rel, CYCLONEDX, deps, errors)
