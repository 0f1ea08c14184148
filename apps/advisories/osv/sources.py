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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.breakers import Breaker, CircuitBreakerError

from .parser import AdvisoryParseError, load_document

__all__ = ["DOCUMENT_SUFFIXES", "RawRecord", "RecordError", "iter_source"]

DOCUMENT_SUFFIXES: tuple[str, ...] = (".json", ".yaml", ".yml")
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # osv.dev's per-ecosystem all.zip files stay well below
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # one advisory is kilobytes; larger members are suspect
_CHUNK = 1024 * 1024
_USER_AGENT = "immune-osv-ingest/1.0"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One loaded record and where it came from."""

    path: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordError:
    """A file or record that could not be read; iteration carries on after it."""

    path: str
    reason: str


SourceItem = RawRecord | RecordError


def iter_source(
    source: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[SourceItem]:
    """Yield every record of `source`, and a RecordError for each unreadable part."""
    text = os.fspath(source)
    if text.lower().startswith(("http://", "https://")):
        yield from _iter_url(text, timeout=timeout, max_bytes=max_bytes)
        return
    path = Path(text)
    if path.is_dir():
        yield from _iter_directory(path)
    elif not path.exists():
        yield RecordError(text, "no such file or directory")
    elif path.suffix.lower() == ".zip":
        yield from _iter_zip(path, label=text)
    elif path.suffix.lower() in DOCUMENT_SUFFIXES:
        yield from _iter_file(path, label=text)
    else:
        allowed = ", ".join((*DOCUMENT_SUFFIXES, ".zip"))
        yield RecordError(text, f"unsupported file type (expected a folder or {allowed})")


def _records(document: Any, label: str) -> Iterator[SourceItem]:
    """One record per mapping; a list document holds several (osv.dev's query dumps)."""
    if isinstance(document, dict):
        yield RawRecord(label, document)
    elif isinstance(document, list):
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


def _iter_bytes(content: bytes, label: str, fmt: str | None = None) -> Iterator[SourceItem]:
    try:
        document = load_document(content, path=label, fmt=fmt)
    except AdvisoryParseError as exc:
        yield RecordError(exc.path, exc.reason)
        return
    yield from _records(document, label)


def _iter_file(path: Path, label: str) -> Iterator[SourceItem]:
    try:
        content = path.read_bytes()
    except OSError as exc:
        yield RecordError(label, f"cannot read file: {exc.strerror or exc}")
        return
    yield from _iter_bytes(content, label)


def _hidden(part: str) -> bool:
    # .git, .github and friends never hold advisories; __MACOSX holds Finder metadata copies.
    return part.startswith(".") or part == "__MACOSX"


def _iter_directory(root: Path) -> Iterator[SourceItem]:
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
        yield RecordError(str(error.filename or root), f"cannot list folder: {error.strerror}")
    # Sorted by path so repeated runs ingest in the same order.
    for path in sorted(found):
        yield from _iter_file(path, label=str(path))


def _iter_zip(path: Path, label: str) -> Iterator[SourceItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield RecordError(label, f"not a readable zip archive: {exc}")
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
            if info.file_size > MAX_MEMBER_BYTES:
                yield RecordError(where, f"member larger than {MAX_MEMBER_BYTES} bytes")
                continue
            try:
                with archive.open(info) as handle:
                    content = handle.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:
                # RuntimeError: encrypted member; BadZipFile: CRC mismatch or corrupt data.
                yield RecordError(where, f"cannot read archive member: {exc}")
                continue
            if len(content) > MAX_MEMBER_BYTES:
                yield RecordError(where, f"member larger than {MAX_MEMBER_BYTES} bytes")
                continue
            yield from _iter_bytes(content, where)


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


def _download(url: str, target: Path, *, timeout: float, max_bytes: int) -> str:
    """Stream `url` into `target`; returns the Content-Type. Raises OSError/ValueError."""
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ValueError(f"only http(s) URLs are fetched, not {url!r}")
    # Scheme checked just above, so file:// and custom schemes never reach urlopen.
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})  # noqa: S310
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


def _iter_url(url: str, *, timeout: float, max_bytes: int) -> Iterator[SourceItem]:
    workdir = Path(tempfile.mkdtemp(prefix="osv-download-"))
    try:
        target = workdir / "download"
        try:
            content_type = OSV_BREAKER.guard(_download, url, target, timeout=timeout,
                                             max_bytes=max_bytes)
        except CircuitBreakerError:
            yield RecordError(url, "download skipped: advisory downloads failed "
                              f"{OSV_BREAKER.failure_count} times in a row; the next attempt "
                              f"goes through in {max(OSV_BREAKER.open_remaining, 0)} s")
            return
        except urllib.error.HTTPError as exc:
            yield RecordError(url, f"download failed: HTTP {exc.code} {exc.reason}")
            return
        except urllib.error.URLError as exc:
            yield RecordError(url, f"download failed: {exc.reason}")
            return
        except (OSError, ValueError) as exc:
            # TimeoutError is an OSError; ValueError covers the size cap and malformed URLs.
            yield RecordError(url, f"download failed: {exc}")
            return
        with target.open("rb") as handle:
            head = handle.read(4)
        kind = _kind_of_download(url, content_type, head)
        if kind == "zip":
            yield from _iter_zip(target, label=url)
        else:
            yield from _iter_bytes(target.read_bytes(), url, fmt=kind or None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
