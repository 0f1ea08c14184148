"""Read raw OSV records from a file, a folder, a zip archive or an http(s) URL of those."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.breakers import Breaker, CircuitBreakerError

from .parser import MAX_DEPTH, MAX_YAML_NODES, AdvisoryParseError, load_document

__all__ = ["DOCUMENT_SUFFIXES", "Limits", "RawRecord", "RecordError", "iter_source"]

DOCUMENT_SUFFIXES: tuple[str, ...] = (".json", ".yaml", ".yml")
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # osv.dev's per-ecosystem all.zip files stay well below
#: One document (a file, a zip member, a downloaded JSON/YAML): an advisory is kilobytes, and
#: a JSON list of advisories is what a bigger one holds; parsed, it takes several times this.
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_RECORDS_PER_FILE = 10_000
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """What one source may make the importer read and hold (settings ADVISORY_MAX_*)."""

    download_bytes: int = DEFAULT_MAX_BYTES
    file_bytes: int = DEFAULT_MAX_FILE_BYTES
    records_per_file: int = DEFAULT_MAX_RECORDS_PER_FILE
    depth: int = MAX_DEPTH
    yaml_nodes: int = MAX_YAML_NODES

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            download_bytes=getattr(settings, "ADVISORY_MAX_DOWNLOAD_BYTES", DEFAULT_MAX_BYTES),
            file_bytes=getattr(settings, "ADVISORY_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES),
            records_per_file=getattr(settings, "ADVISORY_MAX_RECORDS_PER_FILE",
                                     DEFAULT_MAX_RECORDS_PER_FILE),
            depth=getattr(settings, "ADVISORY_MAX_DEPTH", MAX_DEPTH),
            yaml_nodes=getattr(settings, "ADVISORY_MAX_YAML_NODES", MAX_YAML_NODES),
        )
_USER_AGENT = "immune-osv-ingest/1.0"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One loaded record and where it came from."""

    path: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordError:
    """A file or record that could not be read; iteration carries on after it.

    `unreadable_source` marks a source that could not be read at all (missing, not a zip,
    download failed), as opposed to one bad file or record inside a source that was read.
    """

    path: str
    reason: str
    unreadable_source: bool = False


SourceItem = RawRecord | RecordError


def iter_source(
    source: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int | None = None,
    limits: Limits | None = None,
) -> Iterator[SourceItem]:
    """Yield every record of `source`, and a RecordError for each unreadable part.

    `limits` defaults to the settings; `max_bytes` overrides its download cap.
    """
    limits = limits or Limits.from_settings()
    if max_bytes is not None:
        limits = replace(limits, download_bytes=max_bytes)
    text = os.fspath(source)
    if text.lower().startswith(("http://", "https://")):
        yield from _iter_url(text, timeout=timeout, limits=limits)
        return
    path = Path(text)
    if path.is_dir():
        yield from _iter_directory(path, limits)
    elif not path.exists():
        yield RecordError(text, "no such file or directory", unreadable_source=True)
    elif path.suffix.lower() == ".zip":
        yield from _iter_zip(path, label=text, limits=limits)
    elif path.suffix.lower() in DOCUMENT_SUFFIXES:
        yield from _iter_file(path, label=text, limits=limits)
    else:
        allowed = ", ".join((*DOCUMENT_SUFFIXES, ".zip"))
        yield RecordError(text, f"unsupported file type (expected a folder or {allowed})",
                          unreadable_source=True)


def _too_big(size: int, limits: Limits) -> str:
    return (f"file is {size} bytes, above the cap of {limits.file_bytes} bytes "
            "(ADVISORY_MAX_FILE_BYTES)")


def _records(document: Any, label: str, limits: Limits) -> Iterator[SourceItem]:
    """One record per mapping; a list document holds several (osv.dev's query dumps)."""
    if isinstance(document, dict):
        yield RawRecord(label, document)
    elif isinstance(document, list):
        if len(document) > limits.records_per_file:
            yield RecordError(label, f"document holds {len(document)} records, above the cap of "
                              f"{limits.records_per_file} (ADVISORY_MAX_RECORDS_PER_FILE)")
            return
        for index, item in enumerate(document):
            where = f"{label}[{index}]"
            if isinstance(item, dict):
                yield RawRecord(where, item)
            else:
                yield RecordError(where, f"record is not a mapping (got {type(item).__name__})")
    elif document is None:
        yield RecordError(label, "empty document")
    else:
        yield RecordError(label, f"document is not a record (got {type(document).__name__})")


def _iter_bytes(
    content: bytes, label: str, limits: Limits, fmt: str | None = None
) -> Iterator[SourceItem]:
    if len(content) > limits.file_bytes:
        yield RecordError(label, _too_big(len(content), limits))
        return
    try:
        document = load_document(content, path=label, fmt=fmt, max_depth=limits.depth,
                                 max_yaml_nodes=limits.yaml_nodes)
    except AdvisoryParseError as exc:
        yield RecordError(exc.path, exc.reason)
        return
    del content  # the text is not needed once parsed
    yield from _records(document, label, limits)


def _iter_file(
    path: Path, label: str, limits: Limits, fmt: str | None = None
) -> Iterator[SourceItem]:
    try:
        size = path.stat().st_size
        if size > limits.file_bytes:
            yield RecordError(label, _too_big(size, limits))
            return
        with path.open("rb") as handle:
            # Read at most one byte past the cap: a file that grew since stat() is caught too.
            content = handle.read(limits.file_bytes + 1)
    except OSError as exc:
        yield RecordError(label, f"cannot read file: {exc.strerror or exc}")
        return
    yield from _iter_bytes(content, label, limits, fmt=fmt)


def _hidden(part: str) -> bool:
    # .git, .github and friends never hold advisories; __MACOSX holds Finder metadata copies.
    return part.startswith(".") or part == "__MACOSX"


def _iter_directory(root: Path, limits: Limits) -> Iterator[SourceItem]:
    found: list[Path] = []
    walk_errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_errors.append):
        dirnames[:] = [name for name in dirnames if not _hidden(name)]
        found.extend(
            Path(dirpath, name)
            for name in filenames
            if not _hidden(name) and name.lower().endswith(DOCUMENT_SUFFIXES)
        )
    for error in walk_errors:
        where = str(error.filename or root)
        yield RecordError(where, f"cannot list folder: {error.strerror}",
                          unreadable_source=where == str(root))
    # Sorted by path so repeated runs ingest in the same order.
    for path in sorted(found):
        yield from _iter_file(path, label=str(path), limits=limits)


def _iter_zip(path: Path, label: str, limits: Limits) -> Iterator[SourceItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield RecordError(label, f"not a readable zip archive: {exc}", unreadable_source=True)
        return
    with archive:
        members = sorted(
            (
                info
                for info in archive.infolist()
                if not info.is_dir()
                and info.filename.lower().endswith(DOCUMENT_SUFFIXES)
                and not any(_hidden(part) for part in info.filename.split("/"))
            ),
            key=lambda info: info.filename,
        )
        for info in members:
            where = f"{label}!{info.filename}"
            if info.file_size > limits.file_bytes:
                yield RecordError(where, _too_big(info.file_size, limits))
                continue
            try:
                with archive.open(info) as handle:
                    # The declared size may lie (a zip bomb): never inflate past the cap.
                    content = handle.read(limits.file_bytes + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, EOFError) as exc:
                # RuntimeError: encrypted member; BadZipFile: CRC mismatch or corrupt data.
                yield RecordError(where, f"cannot read archive member: {exc}")
                continue
            yield from _iter_bytes(content, where, limits)


_ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip")
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _kind_of_download(url: str, content_type: str, head: bytes) -> str:
    """zip, json, yaml or "" (let the loader sniff): URL suffix first, then Content-Type."""
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    if suffix == ".zip":
        return "zip"
    if suffix in DOCUMENT_SUFFIXES:
        return "json" if suffix == ".json" else "yaml"
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _ZIP_TYPES or head.startswith(b"PK\x03\x04"):
        return "zip"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media in _YAML_TYPES:
        return "yaml"
    return ""


def _download(url: str, target: Path, *, timeout: float, max_bytes: int,
              headers: dict[str, str] | None = None) -> str:
    """Stream `url` into `target`; returns the Content-Type. Raises OSError/ValueError."""
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ValueError(f"only http(s) URLs are fetched, not {url!r}")
    # Scheme checked just above, so file:// and custom schemes never reach urlopen.
    request = urllib.request.Request(  # noqa: S310
        url, headers={"User-Agent": _USER_AGENT, **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise ValueError(f"download is {length} bytes, above the {max_bytes} byte cap")
        written = 0
        with target.open("wb") as handle:
            while chunk := response.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise ValueError(f"download exceeds the {max_bytes} byte cap")
                handle.write(chunk)
        return response.headers.get("Content-Type", "")


def _is_outage(exc: BaseException) -> bool:
    """No answer, or an answer that says "not now" (5xx, 429): what opens the breaker."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, OSError)


#: Advisory downloads pass the ``osv`` breaker (issue 12): after BREAKER_OSV_FAILURES
#: outages in a row the hourly sync reports the source as skipped instead of waiting out
#: every timeout, until BREAKER_OSV_RESET_S has passed.
OSV_BREAKER = Breaker("osv", failure_threshold=settings.BREAKER_OSV_FAILURES,
                      recovery_timeout=settings.BREAKER_OSV_RESET_S, is_failure=_is_outage)


def _iter_url(url: str, *, timeout: float, limits: Limits) -> Iterator[SourceItem]:
    workdir = Path(tempfile.mkdtemp(prefix="osv-download-"))
    try:
        target = workdir / "download"
        try:
            content_type = OSV_BREAKER.guard(_download, url, target, timeout=timeout,
                                             max_bytes=limits.download_bytes)
        except CircuitBreakerError:
            yield RecordError(url, "download skipped: advisory downloads failed "
                              f"{OSV_BREAKER.failure_count} times in a row; the next attempt "
                              f"goes through in {max(OSV_BREAKER.open_remaining, 0)} s",
                              unreadable_source=True)
            return
        except urllib.error.HTTPError as exc:
            yield RecordError(url, f"download failed: HTTP {exc.code} {exc.reason}",
                              unreadable_source=True)
            return
        except urllib.error.URLError as exc:
            yield RecordError(url, f"download failed: {exc.reason}", unreadable_source=True)
            return
        except (OSError, ValueError) as exc:
            # TimeoutError is an OSError; ValueError covers the size cap and malformed URLs.
            yield RecordError(url, f"download failed: {exc}", unreadable_source=True)
            return
        with target.open("rb") as handle:
            head = handle.read(4)
        kind = _kind_of_download(url, content_type, head)
        if kind == "zip":
            yield from _iter_zip(target, label=url, limits=limits)
        else:
            # A single document is held in memory whole: the per-file cap applies to it too.
            yield from _iter_file(target, label=url, limits=limits, fmt=kind or None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
