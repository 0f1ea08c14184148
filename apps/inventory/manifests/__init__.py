"""Discover and parse dependency manifests of a project working copy.

Pure Python (no Django, no ORM): the functions take a project root on disk and
return plain records. See each module for the rules of its format.
"""

from .discovery import discover, manifest_kind
from .project import parse_manifest, parse_project
from .records import ManifestError, ParsedDependency, ParsedManifest

__all__ = [
    "ManifestError",
    "ParsedDependency",
    "ParsedManifest",
    "discover",
    "manifest_kind",
    "parse_manifest",
    "parse_project",
]
