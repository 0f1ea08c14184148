"""iter_source: single files, folders, zip archives and http(s) URLs."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.advisories.osv import RawRecord, RecordError, iter_source, parse_osv

DATA = Path(__file__).parent / "data"
GOOD = ["ghsa-cvss3.json", "ghsa-cvss4.json", "npm-semver.json", "pysec.json"]
# Load fine as documents; parse_osv refuses them later.
PARSE_BAD = ["invalid-version.yaml", "missing-id.json", "unknown-range-type.json"]


def split(items) -> tuple[list[RawRecord], list[RecordError]]:
    items = list(items)
    assert all(isinstance(item, RawRecord | RecordError) for item in items)
    return (
        [i for i in items if isinstance(i, RawRecord)],
        [i for i in items if isinstance(i, RecordError)],
    )


def test_single_json_file() -> None:
    path = str(DATA / "pysec.json")
    records, errors = split(iter_source(path))
    assert errors == []
    assert [r.path for r in records] == [path]
    assert parse_osv(records[0].data, path=records[0].path).id == "PYSEC-2023-9001"


def test_single_yaml_file_keeps_timestamps_as_text() -> None:
    (record,) = iter_source(DATA / "invalid-version.yaml")
    assert isinstance(record, RawRecord)
    assert record.data["modified"] == "2024-01-01T00:00:00Z"


def test_malformed_yaml_yields_error() -> None:
    path = str(DATA / "malformed.yaml")
    (error,) = iter_source(path)
    assert isinstance(error, RecordError)
    assert error.path == path
    assert error.reason.startswith("invalid YAML:")


def test_missing_and_unsupported_paths(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    assert list(iter_source(missing)) == [
        RecordError(missing, "no such file or directory", unreadable_source=True)
    ]
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    (error,) = iter_source(str(other))
    assert isinstance(error, RecordError) and error.reason.startswith("unsupported file type")
    assert error.unreadable_source


def test_data_folder() -> None:
    records, errors = split(iter_source(str(DATA)))
    names = [Path(r.path).name for r in records]
    assert names == sorted(GOOD + PARSE_BAD)
    assert [Path(e.path).name for e in errors] == ["malformed.yaml"]


def test_folder_walk_recurses_sorted_and_skips_hidden(tmp_path: Path) -> None:
    shutil.copy(DATA / "pysec.json", tmp_path / "b.json")
    (tmp_path / "a" / "deeper").mkdir(parents=True)
    shutil.copy(DATA / "npm-semver.json", tmp_path / "a" / "deeper" / "x.yml")
    (tmp_path / ".git").mkdir()
    shutil.copy(DATA / "pysec.json", tmp_path / ".git" / "hidden.json")
    (tmp_path / ".hidden.json").write_text("{}")
    (tmp_path / "README.md").write_text("# not an advisory")
    (tmp_path / "list.json").write_text(json.dumps([{"id": "A"}, 3, {"id": "B"}]))
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "scalar.yaml").write_text("just text")
    (tmp_path / "bad.json").write_text("{nope")
    items = list(iter_source(str(tmp_path)))
    rel = [(type(i).__name__, Path(i.path).relative_to(tmp_path).as_posix()) for i in items]
    assert rel == [
        ("RawRecord", "a/deeper/x.yml"),
        ("RawRecord", "b.json"),
        ("RecordError", "bad.json"),
        ("RecordError", "empty.yaml"),
        ("RawRecord", "list.json[0]"),
        ("RecordError", "list.json[1]"),
        ("RawRecord", "list.json[2]"),
        ("RecordError", "scalar.yaml"),
    ]
    reasons = {Path(i.path).name: i.reason for i in items if isinstance(i, RecordError)}
    assert reasons["bad.json"].startswith("invalid JSON:")
    assert reasons["empty.yaml"] == "empty document"
    assert reasons["list.json[1]"] == "record is not a mapping (got int)"
    assert reasons["scalar.yaml"] == "document is not a record (got str)"


def make_zip(target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for name in GOOD:
            archive.write(DATA / name, f"advisories/{name}")
        archive.write(DATA / "malformed.yaml", "advisories/malformed.yaml")
        archive.writestr("advisories/README.md", "not an advisory")
        archive.writestr("__MACOSX/advisories/._pysec.json", b"\x00\x05\x16\x07")
        archive.writestr(".git/config.json", "{}")
    return target


def test_zip_archive(tmp_path: Path) -> None:
    archive = str(make_zip(tmp_path / "osv.zip"))
    records, errors = split(iter_source(archive))
    assert [r.path for r in records] == [f"{archive}!advisories/{name}" for name in sorted(GOOD)]
    assert [e.path for e in errors] == [f"{archive}!advisories/malformed.yaml"]
    ids = {parse_osv(r.data, path=r.path).id for r in records}
    assert "GHSA-2c7v-qcjp-4mg2" in ids


def test_broken_zip(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    (error,) = iter_source(str(broken))
    assert isinstance(error, RecordError) and error.reason.startswith("not a readable zip")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local http.server on 127.0.0.1 serving a temporary folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_url_sources(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    make_zip(root / "osv.zip")
    shutil.copy(DATA / "ghsa-cvss3.json", root / "one.json")
    shutil.copy(root / "osv.zip", root / "feed")  # no suffix

    records, errors = split(iter_source(f"{base}/osv.zip"))
    assert [r.path for r in records] == [f"{base}/osv.zip!advisories/{n}" for n in sorted(GOOD)]
    assert [e.path for e in errors] == [f"{base}/osv.zip!advisories/malformed.yaml"]

    records, errors = split(iter_source(f"{base}/one.json"))
    assert errors == []
    assert [r.path for r in records] == [f"{base}/one.json"]
    assert parse_osv(records[0].data).id == "GHSA-2c7v-qcjp-4mg2"

    # No suffix and application/octet-stream: recognised by the zip signature.
    records, errors = split(iter_source(f"{base}/feed"))
    assert len(records) == len(GOOD) and len(errors) == 1


def test_url_failures(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (error,) = iter_source(f"{base}/missing.json")
    assert error == RecordError(f"{base}/missing.json", "download failed: HTTP 404 File not found",
                                unreadable_source=True)
    (root / "big.json").write_text(json.dumps({"id": "X", "details": "x" * 5000}))
    (error,) = iter_source(f"{base}/big.json", max_bytes=1000)
    assert isinstance(error, RecordError) and "byte cap" in error.reason
    assert error.unreadable_source
    (error,) = iter_source("http://127.0.0.1:9/refused.json", timeout=2)
    assert isinstance(error, RecordError) and error.reason.startswith("download failed:")
    assert error.unreadable_source
