"""Is a version a reviewer names for an upgrade a real release of the package?

A target version must parse in its ecosystem (PEP 440 for PyPI, SemVer for npm) and lie
above every version the project pins. Whether it exists is asked of the package index
when one is configured (``PACKAGE_INDEX_URL``, a PEP 503/691 "simple" index such as
``https://pypi.org/simple``; PyPI packages only): a version the index does not list is
refused. Without an index, or when it cannot be reached, existence is not checked and the
patch says so in its notes (the wargame, which installs the version, finds out for sure).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin

import structlog
from django.conf import settings
from django.core.cache import cache
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)

from apps.advisories.osv.matching import ecosystem_kind, parse_pep440, parse_semver

log = structlog.get_logger(__name__)

INDEX_TIMEOUT_S = 5
INDEX_CACHE_S = 600
MAX_INDEX_BYTES = 20_000_000  # a simple page of a package with thousands of files
_PEP691 = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class TargetCheck:
    """``problem``: why the target is refused (None: accepted); ``note``: what the patch
    records about the check (the index that listed it, or why existence was not checked)."""

    problem: str | None
    note: str = ""


def _parse(ecosystem: str, version: str):
    return parse_pep440(version) if ecosystem_kind(ecosystem) == "pypi" else parse_semver(version)


def target_version_check(*, ecosystem: str, package: str, pinned: list[str],
                         target: str) -> TargetCheck:
    kind = ecosystem_kind(ecosystem)
    if kind == "other":
        return TargetCheck(None, f"{target}: versions of {ecosystem} are not checked")
    parsed = _parse(ecosystem, target)
    if parsed is None:
        standard = "PEP 440" if kind == "pypi" else "SemVer"
        return TargetCheck(f"{target!r} is not a {ecosystem} version ({standard}).")
    floor = [p for v in pinned if (p := _parse(ecosystem, v)) is not None]
    if floor and parsed <= max(floor):
        return TargetCheck(f"{target} is not above the pinned version "
                           f"{', '.join(sorted(pinned))}: an upgrade goes up.")
    if kind != "pypi" or not settings.PACKAGE_INDEX_URL:
        return TargetCheck(None, f"{target} was not checked against a package index "
                                 "(PACKAGE_INDEX_URL is not set)")
    releases = package_releases(package)
    if releases is None:
        return TargetCheck(None, f"{target} was not checked: the package index "
                                 f"{settings.PACKAGE_INDEX_URL} could not be read")
    if canonicalize_version(target) not in releases:
        return TargetCheck(f"{package} has no release {target} in the package index "
                           f"({settings.PACKAGE_INDEX_URL}).")
    return TargetCheck(None, f"{target} is a release of {package} in "
                             f"{settings.PACKAGE_INDEX_URL}")


def package_releases(package: str) -> set[str] | None:
    """The versions (canonical form) the index has files for; an empty set when it does not
    know the package (404); None when it could not be read. Cached INDEX_CACHE_S."""
    name = canonicalize_name(package)
    key = f"releases:{settings.PACKAGE_INDEX_URL}:{name}"
    cached = cache.get(key)
    if cached is not None:
        return set(cached)
    url = urljoin(settings.PACKAGE_INDEX_URL.rstrip("/") + "/", f"{name}/")
    request = urllib.request.Request(url, headers={  # noqa: S310 (the operator's index)
        "Accept": f"{_PEP691}, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(request, timeout=INDEX_TIMEOUT_S) as response:  # noqa: S310
            body = response.read(MAX_INDEX_BYTES + 1)
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            cache.set(key, [], INDEX_CACHE_S)
            return set()
        log.warning("releases.index_failed", url=url, status=exc.code)
        return None
    except (OSError, ValueError) as exc:
        log.warning("releases.index_unreachable", url=url, error=str(exc)[:200])
        return None
    if len(body) > MAX_INDEX_BYTES:
        log.warning("releases.index_too_large", url=url)
        return None
    try:
        releases = _versions(body.decode("utf-8", errors="replace"), content_type, name)
    except ValueError as exc:
        log.warning("releases.index_unreadable", url=url, error=str(exc)[:200])
        return None
    cache.set(key, sorted(releases), INDEX_CACHE_S)
    return releases


def _versions(text: str, content_type: str, name: str) -> set[str]:
    if content_type.split(";")[0].strip() == _PEP691:
        document = json.loads(text)
        if isinstance(document.get("versions"), list):  # PEP 700
            return {canonicalize_version(str(v)) for v in document["versions"]}
        filenames = [f.get("filename", "") for f in document.get("files", [])
                     if isinstance(f, dict)]
    else:
        collector = _Links()
        collector.feed(text)
        filenames = collector.filenames
    versions = set()
    for filename in filenames:
        version = _version_of(filename, name)
        if version:
            versions.add(version)
    return versions


def _version_of(filename: str, name: str) -> str | None:
    """The version of a wheel or an sdist of ``name`` (other files are not counted)."""
    try:
        if filename.endswith(".whl"):
            wheel_name, version, _, _ = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            wheel_name, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return canonicalize_version(str(version)) if wheel_name == name else None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.filenames: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href") or ""
            self.filenames.append(href.split("#")[0].rsplit("/", 1)[-1])
