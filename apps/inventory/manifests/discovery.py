"""Find dependency manifests in a project working copy.

Discovery is by file name (plus a cheap content check for generic SBOM names);
the kinds returned by :func:`manifest_kind` are the keys the parsers dispatch on.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .records import ManifestTooLarge, read_text

REQUIREMENTS = "requirements"
POETRY_LOCK = "poetry.lock"
PIPFILE_LOCK = "Pipfile.lock"
UV_LOCK = "uv.lock"
PYPROJECT = "pyproject.toml"
NPM_LOCK = "package-lock.json"
CYCLONEDX = "cyclonedx"

# Directories that hold installed or generated code, never the project's own manifests.
SKIPPED_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", "site-packages"})

_EXACT_NAMES = {
    "poetry.lock": POETRY_LOCK,
    "Pipfile.lock": PIPFILE_LOCK,
    "uv.lock": UV_LOCK,
    "pyproject.toml": PYPROJECT,
    "package-lock.json": NPM_LOCK,
    # npm-shrinkwrap.json is a package-lock.json that is published with a package.
    "npm-shrinkwrap.json": NPM_LOCK,
}
# Generic names that only count as SBOMs when the content says CycloneDX.
_SBOM_NAMES = frozenset({"bom.json", "sbom.json"})
_BOM_FORMAT = re.compile(r'"bomFormat"\s*:\s*"CycloneDX"')
_SNIFF_BYTES = 8192


def manifest_kind(path: Path) -> str | None:
    """The manifest kind implied by a file's name and location, or None.

    Generic SBOM names (``bom.json``, ``sbom.json``) are reported as CycloneDX
    here; :func:`discover` additionally checks their content.
    """
    name = path.name
    if name in _EXACT_NAMES:
        return _EXACT_NAMES[name]
    lower = name.lower()
    if lower.endswith(".txt"):
        # requirements.txt, requirements-dev.txt, requirements_test.txt, and
        # any .txt inside a "requirements" directory (requirements/base.txt).
        if lower.startswith("requirements") or "requirements" in path.parent.parts:
            return REQUIREMENTS
        return None
    if lower.endswith(".cdx.json") or lower in _SBOM_NAMES:
        return CYCLONEDX
    return None


def is_cyclonedx_json(path: Path) -> bool:
    """True when a JSON file's top level declares ``"bomFormat": "CycloneDX"``.

    Sniffs the head first (CycloneDX tools write ``bomFormat`` near the top);
    only when that is inconclusive is the whole document parsed.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            if _BOM_FORMAT.search(head.decode("utf-8", errors="replace")):
                return True
            if len(head) < _SNIFF_BYTES and b"bomFormat" not in head:
                return False
        data = json.loads(read_text(path))
    except ManifestTooLarge:
        return True  # so the scan reports it as too large rather than ignoring it
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("bomFormat") == "CycloneDX"


def _skip_dir(name: str) -> bool:
    return name in SKIPPED_DIRS or name.startswith(".")


def _inside(path: Path, real_root: Path) -> bool:
    """False for a symlink that points outside the project (never read those)."""
    if not path.is_symlink():
        return True
    return path.resolve().is_relative_to(real_root)


def discover(root: Path) -> list[Path]:
    """Return the manifest files under ``root``, sorted by path.

    Skips VCS metadata, hidden directories, virtualenvs and installed packages;
    symlinked directories are not followed so the walk stays inside the tree.
    """
    root = Path(root)
    real_root = root.resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not _skip_dir(d)]
        current = Path(dirpath)
        relative_dir = current.relative_to(root)
        for filename in filenames:
            kind = manifest_kind(relative_dir / filename)
            if kind is None:
                continue
            path = current / filename
            if not path.is_file() or not _inside(path, real_root):
                continue
            if (kind == CYCLONEDX and filename.lower() in _SBOM_NAMES
                    and not is_cyclonedx_json(path)):
                continue
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)
