"""Find dependency manifests in a project working copy.

Discovery is by file name (plus a cheap content check for generic SBOM names and for
``.in`` files whose name says nothing); the kinds returned by :func:`manifest_kind` are
the keys the parsers dispatch on. The file names follow Renovate's ``pip_requirements``
and Dependabot's pip file fetcher (docs/apv.md, "Manifests"):

* requirements: ``*requirements*.txt`` (``requirements-dev.txt``, ``test_requirements.txt``,
  ``dev-requirements.txt``), ``*.pip``, pip-tools ``*.in`` inputs, and any ``.txt``/``.in``
  inside a folder named ``requirements``;
* constraints: ``constraints*.txt`` (pip ``-c`` files), which pin packages something else
  requires and never add one;
* lock files and project files by exact name (``poetry.lock``, ``pdm.lock``, ...).

Walked trees skip what is installed or generated rather than written by the project:
hidden folders (``.git``, ``.tox``, ``.venv``, ...), ``node_modules`` and
``bower_components``, ``__pycache__``, ``site-packages``/``dist-packages`` and any
virtualenv (a folder named ``venv`` or holding a ``pyvenv.cfg``). Test folders are *not*
skipped: their requirements are installed by CI and are the project's; a project excludes
fixtures with its own patterns (:mod:`.globs`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .records import ManifestTooLarge, read_text

REQUIREMENTS = "requirements"
CONSTRAINTS = "constraints"
PDM_LOCK = "pdm.lock"
POETRY_LOCK = "poetry.lock"
PIPFILE_LOCK = "Pipfile.lock"
UV_LOCK = "uv.lock"
PYPROJECT = "pyproject.toml"
NPM_LOCK = "package-lock.json"
CYCLONEDX = "cyclonedx"

# Directories that hold installed or generated code, never the project's own manifests.
SKIPPED_DIRS = frozenset({".git", "node_modules", "bower_components", ".venv", "venv",
                          "__pycache__", "site-packages", "dist-packages"})
#: A folder holding this file is a virtualenv (PEP 405), whatever its name (``env``).
VENV_MARKER = "pyvenv.cfg"

_EXACT_NAMES = {
    "poetry.lock": POETRY_LOCK,
    "pdm.lock": PDM_LOCK,
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
#: ``.in`` files of other tools that are never pip-tools inputs.
_NOT_REQUIREMENTS_IN = frozenset({"manifest.in", "makefile.in"})


def manifest_kind(path: Path) -> str | None:
    """The manifest kind implied by a file's name and location, or None.

    Generic SBOM names (``bom.json``, ``sbom.json``) are reported as CycloneDX
    here; :func:`discover` additionally checks their content.
    """
    name = path.name
    if name in _EXACT_NAMES:
        return _EXACT_NAMES[name]
    lower = name.lower()
    in_requirements_dir = "requirements" in path.parent.parts
    if lower.endswith(".txt"):
        if lower.startswith("constraints"):
            return CONSTRAINTS  # constraints.txt, constraints-py311.txt
        # requirements.txt, requirements-dev.txt, test_requirements.txt, dev-requirements.txt,
        # and any .txt inside a "requirements" directory (requirements/base.txt).
        if "requirements" in lower or in_requirements_dir:
            return REQUIREMENTS
        return None
    if lower.endswith(".pip"):
        return REQUIREMENTS  # requirements.pip, dev.pip (Renovate's pip_requirements)
    if lower.endswith(".in"):
        # pip-tools inputs (requirements.in, dev.in); not MANIFEST.in, Makefile.in or
        # templates such as config.h.in. discover() also checks the content of .in files
        # whose name and folder say nothing.
        stem = lower[:-3]
        if lower in _NOT_REQUIREMENTS_IN or not stem or "." in stem:
            return None
        return REQUIREMENTS
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


def looks_like_requirements(path: Path) -> bool:
    """Dependabot's test for a requirements file whose name does not say so: every line is
    blank, a comment, an option (``-r``, ``-c``, ``-e``, ``--...``) or a valid requirement,
    and at least one line is not blank."""
    from .pip_format import logical_lines, parse_requirement_text, split_args_options

    try:
        text = read_text(path)
    except ManifestTooLarge:
        return True  # reported as too large rather than silently ignored
    except (OSError, UnicodeDecodeError):
        return False
    seen = False
    for _, line in logical_lines(text):
        args, _options = split_args_options(line)
        seen = True
        if args:
            try:
                parse_requirement_text(args)
            except ValueError:  # InvalidRequirement and InvalidMarker are ValueErrors
                return False
    return seen


def needs_content_check(path: Path) -> bool:
    """A ``.in`` file counted only when its content is a requirements file."""
    lower = path.name.lower()
    return (lower.endswith(".in") and "requirements" not in lower
            and "requirements" not in path.parent.parts)


def skipped_dir(name: str, path: Path | None = None) -> bool:
    """A folder discovery never enters (installed or generated code, see the module doc)."""
    if name in SKIPPED_DIRS or name.startswith("."):
        return True
    return path is not None and (path / VENV_MARKER).is_file()


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
        current = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not skipped_dir(d, current / d)]
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
            if needs_content_check(relative_dir / filename) and not looks_like_requirements(path):
                continue
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)
