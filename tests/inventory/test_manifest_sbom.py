"""CycloneDX JSON SBOMs."""

from __future__ import annotations

import json
from pathlib import Path

from apps.inventory.manifests import parse_manifest

DATA = Path(__file__).parent / "data"


def test_cyclonedx_py_style_sbom() -> None:
    root = DATA / "sbom"
    manifest = parse_manifest(root, root / "bom.cdx.json")
    assert (manifest.path, manifest.kind, manifest.errors) == ("bom.cdx.json", "cyclonedx", [])
    rows = [(d.ecosystem, d.name, d.normalised_name, d.version, d.line, d.direct)
            for d in manifest.dependencies]
    assert rows == [
        ("PyPI", "asgiref", "asgiref", "3.3.4", 5, False),
        ("PyPI", "Django", "django", "3.2", 32, True),
        ("PyPI", "Jinja2", "jinja2", "2.10", 65, True),
        ("PyPI", "MarkupSafe", "markupsafe", "1.1.1", 92, False),
        ("PyPI", "PyYAML", "pyyaml", "5.3.1", 119, True),
        ("PyPI", "pytz", "pytz", "2021.1", 146, False),
        ("PyPI", "sqlparse", "sqlparse", "0.4.1", 173, False),
        ("PyPI", "urllib3", "urllib3", "1.24.1", 200, True),
        ("npm", "@acme/left-pad", "@acme/left-pad", "1.3.0", 227, True),
        # golang and purl-less components are not tracked ecosystems.
    ]
    deps = {d.name: d for d in manifest.dependencies}
    assert deps["Django"].specifier == "==3.2"
    assert deps["@acme/left-pad"].specifier == "1.3.0"
    assert deps["Django"].hashes == (
        "sha256:4445d918dfcf1af804b749eeee4835dccfd27c06b6828533be827473ff63439f",)


def _bom(components: list[dict], **extra) -> dict:
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "components": components, **extra}


def test_no_dependency_graph_means_all_direct_and_nested_components(tmp_path: Path) -> None:
    bom = _bom([
        {"type": "library", "name": "requests", "version": "2.31.0",
         "purl": "pkg:pypi/requests@2.31.0", "bom-ref": "requests",
         "components": [{"type": "library", "name": "urllib3", "version": "1.24.1",
                         "purl": "pkg:pypi/urllib3@1.24.1", "bom-ref": "urllib3"}]},
    ])
    path = tmp_path / "sbom.json"
    path.write_text(json.dumps(bom, indent=2))
    manifest = parse_manifest(tmp_path, path)
    assert manifest.errors == []
    assert [(d.name, d.version, d.line, d.direct) for d in manifest.dependencies] == [
        ("requests", "2.31.0", 6, True), ("urllib3", "1.24.1", 13, True)]


def test_bad_purl_falls_back_to_plain_json(tmp_path: Path) -> None:
    bom = _bom([
        {"type": "library", "name": "PyYAML", "version": "5.3.1",
         "purl": "pkg:pypi/pyyaml@5.3.1", "bom-ref": "a"},
        {"type": "library", "name": "junk", "version": "1", "purl": "not-a-purl", "bom-ref": "b"},
        {"type": "library", "name": "leftpad", "purl": "pkg:npm/leftpad@0.0.1", "bom-ref": "c"},
    ], metadata={"component": {"type": "application", "name": "app", "bom-ref": "root"}},
        dependencies=[{"ref": "root", "dependsOn": ["a"]}, {"ref": "a"}])
    path = tmp_path / "app.cdx.json"
    path.write_text(json.dumps(bom, indent=2))
    manifest = parse_manifest(tmp_path, path)
    assert [(d.name, d.version, d.direct) for d in manifest.dependencies] == [
        ("PyYAML", "5.3.1", True),
        ("leftpad", "0.0.1", False),  # version taken from the purl
    ]
    assert [(e.manifest_path, e.line) for e in manifest.errors] == [("app.cdx.json", 13)]
    assert "not-a-purl" in manifest.errors[0].reason


def test_json_that_is_not_cyclonedx(tmp_path: Path) -> None:
    path = tmp_path / "thing.cdx.json"
    path.write_text('{"spdxVersion": "SPDX-2.3"}')
    manifest = parse_manifest(tmp_path, path)
    assert manifest.dependencies == []
    assert manifest.errors[0].reason.startswith("not a CycloneDX BOM")
    path.write_text("{not json")
    manifest = parse_manifest(tmp_path, path)
    assert manifest.dependencies == []
    assert manifest.errors[0].reason.startswith("invalid JSON")
