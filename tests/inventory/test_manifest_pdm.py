"""pdm.lock, lock formats 3.x ([metadata.files]) and 4.x (inline files, groups, markers)."""

from __future__ import annotations

from pathlib import Path

from apps.inventory.manifests import discover, manifest_kind, parse_manifest

DATA = Path(__file__).parent / "data"


def table(manifest) -> dict[str, tuple]:
    return {d.name: (d.version, d.line, d.direct) for d in manifest.dependencies}


def test_pdm_lock_3x_takes_hashes_from_metadata_files() -> None:
    root = DATA / "pdm3"
    manifest = parse_manifest(root, root / "pdm.lock")
    assert (manifest.path, manifest.kind, manifest.errors) == ("pdm.lock", "pdm.lock", [])
    assert table(manifest) == {
        "click": ("7.1.2", 2, True),  # [tool.pdm.dev-dependencies]
        "flask": ("1.1.4", 8, True),  # project.dependencies says "Flask"
        "itsdangerous": ("1.1.0", 20, False),
        "jinja2": ("2.11.3", 26, False),
        "markupsafe": ("1.1.1", 42, False),
        "werkzeug": ("1.0.1", 48, False),
    }  # local-plugin (a path entry) is the project's own, not a PyPI distribution
    deps = {d.name: d for d in manifest.dependencies}
    assert deps["flask"].specifier == "==1.1.4"
    assert deps["flask"].hashes == (
        "sha256:c34f04500f2cbbea882b1acb02002ad6fe6b7ffa64a6164577995657f50aed22",
        "sha256:0fbeb6180d383a9186d0d6ed954e0042ad9f18e0e8de088b2b419d526927d196")
    assert all(len(d.hashes) == 2 for d in manifest.dependencies)


def test_pdm_lock_4x_inline_files_markers_and_extras_entries() -> None:
    root = DATA / "pdm4"
    manifest = parse_manifest(root, root / "pdm.lock")
    assert manifest.errors == []
    assert table(manifest) == {
        "certifi": ("2021.10.8", 14, False),
        "charset-normalizer": ("2.0.7", 24, False),
        "idna": ("3.3", 36, False),
        "requests": ("2.26.0", 48, True),  # project.dependencies
        "urllib3": ("1.26.7", 80, True),  # PEP 735 [dependency-groups]
    }
    deps = {d.name: d for d in manifest.dependencies}
    # The "requests[security]" entry is folded into requests: one dependency, its extras.
    assert deps["requests"].extras == ("security",)
    assert deps["idna"].marker == 'python_version >= "3"'
    assert deps["urllib3"].hashes[0] == (
        "sha256:c4fdf4019605b6e5423637e01bc9fe4daef873709a7973e195ceba0a62bbc844")


def test_pdm_lock_without_pyproject_is_all_direct_and_is_discovered(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "pdm.lock").write_text((DATA / "pdm4" / "pdm.lock").read_text())
    assert manifest_kind(Path("app/pdm.lock")) == "pdm.lock"
    assert discover(tmp_path) == [tmp_path / "app" / "pdm.lock"]
    manifest = parse_manifest(tmp_path, tmp_path / "app" / "pdm.lock")
    assert manifest.path == "app/pdm.lock"
    assert all(d.direct for d in manifest.dependencies) and len(manifest.dependencies) == 5


def test_pdm_lock_broken_or_foreign_versions_are_reported(tmp_path: Path) -> None:
    (tmp_path / "pdm.lock").write_text("[[package]\n")
    broken = parse_manifest(tmp_path, tmp_path / "pdm.lock")
    assert broken.dependencies == [] and broken.unread == ("pdm.lock",)
    assert broken.errors[0].reason.startswith("invalid TOML")

    (tmp_path / "pdm.lock").write_text(
        '[[package]]\nname = "six"\nversion = "1.16.0"\n\n[[package]]\nversion = "1"\n\n'
        '[metadata]\nlock_version = "5.0"\n')
    odd = parse_manifest(tmp_path, tmp_path / "pdm.lock")
    assert [(d.name, d.version) for d in odd.dependencies] == [("six", "1.16.0")]
    assert [(e.line, e.reason) for e in odd.errors] == [
        (9, "lock_version 5.0 is not 3.x or 4.x; read as 4.x"),
        (None, "package entry without a name")]
