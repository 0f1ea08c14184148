"""NVD's CVE data in its JSON 2.0 syntax, parsed into plain dataclasses (no ORM, like ``osv/``).

Read: the feed files ``nvdcve-2.0-<year>.json`` / ``nvdcve-2.0-modified.json`` (plain or
gzip, detected from the bytes) and saved responses of the CVE API 2.0
(https://nvd.nist.gov/developers/vulnerabilities). Both are one object::

    {"resultsPerPage", "startIndex", "totalResults", "format": "NVD_CVE", "version": "2.0",
     "timestamp", "vulnerabilities": [{"cve": {"id", "sourceIdentifier", "published",
     "lastModified", "vulnStatus", "metrics": {"cvssMetricV40": [...], "cvssMetricV31": [...],
     "cvssMetricV30": [...], "cvssMetricV2": [...]}, "weaknesses": [...],
     "cisaExploitAdd", "cisaActionDue", "cisaRequiredAction", "cisaVulnerabilityName", ...}}]}

(JSON schema: https://csrc.nist.gov/schema/nvd/api/2.0/cve_api_json_2.0.schema). A metric is
``{"source", "type": "Primary"|"Secondary", "cvssData": {"version", "vectorString",
"baseScore", "baseSeverity", ...}}``; CVSS v2 keeps ``baseSeverity`` beside ``cvssData``.

Streamed: a yearly feed is hundreds of megabytes, so the ``vulnerabilities`` list is read one
record at a time (ijson's C parser); memory holds one record (at most ``max_record_bytes`` of
JSON) plus the caller's batch, whatever the file's size. A record that cannot be used is an
``FeedError`` (where, why: the EPSS and KEV feeds' own) in place of the record: the caller
reports it and goes on. A file that is not this format at all, or stops being JSON
part-way, raises ``NvdUnreadable``.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import cvss
import ijson

from apps.advisories.feeds import CVE_RE, FeedError

#: ``metrics`` keys, newest CVSS version first, with the ``cvssData.version`` each holds.
METRIC_KEYS: tuple[tuple[str, str], ...] = (
    ("cvssMetricV40", "4.0"), ("cvssMetricV31", "3.1"), ("cvssMetricV30", "3.0"),
    ("cvssMetricV2", "2.0"),
)
VERSION_RANK = {"4.0": 4, "3.1": 3, "3.0": 2, "2.0": 1}
METRIC_TYPES = ("Primary", "Secondary")
SEVERITIES = ("NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL")
REJECTED = "Rejected"
_CVSS_CLASS = {"4.0": cvss.CVSS4, "3.1": cvss.CVSS3, "3.0": cvss.CVSS3, "2.0": cvss.CVSS2}
_CWE_RE = re.compile(r"^CWE-\d{1,7}$")
#: Column sizes of ``NvdCve`` (checked here, so every database stores the same thing).
_MAX = {"sourceIdentifier": 200, "vulnStatus": 50, "vectorString": 300, "source": 200,
        "cisaVulnerabilityName": 500, "cisaRequiredAction": 10_000}
_READ_CHUNK = 64 * 1024


class NvdUnreadable(Exception):
    """The file is not NVD's CVE JSON 2.0 at all, or stops being JSON part-way; the
    caller stores nothing of it."""


@dataclass(frozen=True)
class CvssMetric:
    version: str
    vector: str
    base_score: float
    base_severity: str
    source: str
    type: str

    def as_dict(self) -> dict:
        return {"version": self.version, "vector": self.vector, "base_score": self.base_score,
                "base_severity": self.base_severity, "source": self.source, "type": self.type}


@dataclass(frozen=True)
class NvdRecord:
    cve: str
    source_identifier: str
    vuln_status: str
    published: datetime
    last_modified: datetime
    metrics: tuple[CvssMetric, ...]
    cwe_ids: tuple[str, ...]
    kev_date_added: date | None = None
    kev_action_due: date | None = None
    kev_required_action: str = ""
    kev_vulnerability_name: str = ""

    @property
    def rejected(self) -> bool:
        return self.vuln_status == REJECTED


@dataclass
class NvdHeader:
    """The document's own fields, as far as they were read."""

    format: str = ""
    version: str = ""
    timestamp: str = ""
    total_results: int | None = None
    results_per_page: int | None = None
    start_index: int | None = None
    keys: list[str] = field(default_factory=list)


def preferred_metric(metrics: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The metric to use of one CVE's (``CvssMetric.as_dict`` form): a Primary one (NVD's
    own analysis) before a Secondary one (a CNA's or ADP's), then the newest CVSS version
    (4.0, 3.1, 3.0, 2.0), then the higher score, then the source's name."""
    if not metrics:
        return None
    return max(metrics, key=lambda m: (
        m.get("type") == "Primary", VERSION_RANK.get(m.get("version", ""), 0),
        m.get("base_score", 0.0), m.get("source", "")))


# --- one record ---------------------------------------------------------------------------
class _Refused(ValueError):
    pass


def _text(value: Any, where: str, *, limit: int | None = None, required: bool = False) -> str:
    if value is None:
        if required:
            raise _Refused(f"{where}: missing")
        return ""
    if not isinstance(value, str):
        raise _Refused(f"{where}: {type(value).__name__}, not a string")
    if "\x00" in value:
        raise _Refused(f"{where}: holds a NUL character (\\u0000), which is not stored")
    if limit is not None and len(value) > limit:
        raise _Refused(f"{where}: {len(value)} characters, above the {limit} stored")
    if required and not value.strip():
        raise _Refused(f"{where}: empty")
    return value


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Refused(f"{where}: {type(value).__name__}, not a list")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Refused(f"{where}: {type(value).__name__}, not an object")
    return value


def _timestamp(value: Any, where: str) -> datetime:
    text = _text(value, where, limit=40, required=True)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Refused(f"{where}: {text!r} is not an ISO 8601 time") from None
    # NVD writes UTC without an offset ("2021-02-09T21:15:12.857").
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _date(value: Any, where: str) -> date | None:
    text = _text(value, where, limit=40)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise _Refused(f"{where}: {text!r} is not a date") from None


def _metric(entry: Any, version: str, where: str) -> CvssMetric:
    entry = _mapping(entry, where)
    data = _mapping(entry.get("cvssData"), f"{where}.cvssData")
    stated = _text(data.get("version"), f"{where}.cvssData.version", limit=10, required=True)
    if stated != version:
        raise _Refused(f"{where}.cvssData.version: {stated!r} in a CVSS {version} list")
    metric_type = _text(entry.get("type"), f"{where}.type", limit=10, required=True)
    if metric_type not in METRIC_TYPES:
        raise _Refused(f"{where}.type: {metric_type!r}, not Primary or Secondary")
    vector = _text(data.get("vectorString"), f"{where}.cvssData.vectorString",
                   limit=_MAX["vectorString"], required=True).strip()
    if version != "2.0" and not vector.startswith(f"CVSS:{version}/"):
        raise _Refused(f"{where}.cvssData.vectorString: {vector[:60]!r} is not a CVSS "
                       f"{version} vector")
    try:
        _CVSS_CLASS[version](vector)
    except (cvss.CVSSError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise _Refused(f"{where}.cvssData.vectorString: malformed CVSS {version} vector "
                       f"{vector[:60]!r}: {exc}") from None
    score = data.get("baseScore")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise _Refused(f"{where}.cvssData.baseScore: {type(score).__name__}, not a number")
    if not math.isfinite(score) or not 0.0 <= score <= 10.0:
        raise _Refused(f"{where}.cvssData.baseScore: {score!r} is not between 0 and 10")
    # CVSS v2 metrics carry baseSeverity beside cvssData; v3.x and v4.0 inside it.
    holder, severity_where = ((entry, f"{where}.baseSeverity") if version == "2.0"
                              else (data, f"{where}.cvssData.baseSeverity"))
    severity = _text(holder.get("baseSeverity"), severity_where, limit=20).upper()
    if severity and severity not in SEVERITIES:
        raise _Refused(f"{severity_where}: {severity[:20]!r} is no CVSS severity")
    return CvssMetric(
        version=version, vector=vector, base_score=float(score), base_severity=severity,
        source=_text(entry.get("source"), f"{where}.source", limit=_MAX["source"]),
        type=metric_type)


def _cwe_ids(weaknesses: Any) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for w_index, weakness in enumerate(_list(weaknesses, "weaknesses")):
        where = f"weaknesses[{w_index}]"
        weakness = _mapping(weakness, where)
        for d_index, item in enumerate(_list(weakness.get("description"),
                                             f"{where}.description")):
            item = _mapping(item, f"{where}.description[{d_index}]")
            value = _text(item.get("value"), f"{where}.description[{d_index}].value",
                          limit=100).strip()
            # NVD-CWE-Other and NVD-CWE-noinfo say there is no CWE to name.
            if _CWE_RE.match(value):
                found.setdefault(value, None)
    return tuple(found)


def parse_cve(item: Any) -> NvdRecord:
    """One element of ``vulnerabilities``: ``{"cve": {...}}``. Raises ``ValueError`` with
    the field and reason."""
    item = _mapping(item, "item")
    if "cve" not in item:
        raise _Refused("no 'cve' object" + (" (this looks like CISA's KEV catalog, which "
                                            "import_kev reads)" if "cveID" in item else ""))
    cve = _mapping(item["cve"], "cve")
    cve_id = _text(cve.get("id"), "cve.id", limit=50, required=True).strip().upper()
    if not CVE_RE.match(cve_id):
        raise _Refused(f"cve.id: {cve_id[:60]!r} is not a CVE id")
    metrics_field = cve.get("metrics")
    metrics_field = {} if metrics_field is None else _mapping(metrics_field, "cve.metrics")
    metrics: list[CvssMetric] = []
    for key, version in METRIC_KEYS:
        for index, entry in enumerate(_list(metrics_field.get(key), f"cve.metrics.{key}")):
            metrics.append(_metric(entry, version, f"cve.metrics.{key}[{index}]"))
    return NvdRecord(
        cve=cve_id,
        source_identifier=_text(cve.get("sourceIdentifier"), "cve.sourceIdentifier",
                                limit=_MAX["sourceIdentifier"]),
        vuln_status=_text(cve.get("vulnStatus"), "cve.vulnStatus", limit=_MAX["vulnStatus"]),
        published=_timestamp(cve.get("published"), "cve.published"),
        last_modified=_timestamp(cve.get("lastModified"), "cve.lastModified"),
        metrics=tuple(metrics),
        cwe_ids=_cwe_ids(cve.get("weaknesses")),
        kev_date_added=_date(cve.get("cisaExploitAdd"), "cve.cisaExploitAdd"),
        kev_action_due=_date(cve.get("cisaActionDue"), "cve.cisaActionDue"),
        kev_required_action=_text(cve.get("cisaRequiredAction"), "cve.cisaRequiredAction",
                                  limit=_MAX["cisaRequiredAction"]),
        kev_vulnerability_name=_text(cve.get("cisaVulnerabilityName"),
                                     "cve.cisaVulnerabilityName",
                                     limit=_MAX["cisaVulnerabilityName"]),
    )


# --- the file -----------------------------------------------------------------------------
class _RecordTooLarge(Exception):
    pass


class _CapExceeded(Exception):
    """The document passed a cap (size, nesting); the reason is the message."""


#: Nesting a document may reach. NVD's deepest (a record's configurations) is about 12; the
#: cap matters because ijson keeps the path of every open level, so 2 MB of "[" costs it
#: terabytes: the depth is checked on the bytes, before the parser sees them.
MAX_DEPTH = 64
#: An escape inside a JSON string (JSON has backslashes nowhere else), and a string once its
#: escapes are gone.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_PLAIN_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class _NestingScanner:
    """Tracks the nesting depth of a JSON byte stream fed chunk by chunk (strings skipped,
    whatever chunk boundary they straddle); raises ``_CapExceeded`` past ``max_depth``.
    Only C-level passes over the bytes (regex, count, translate) and a loop over brackets."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.depth = 0
        self.in_string = False
        self.escaped = False  # an open string's last byte was an unpaired backslash

    def feed(self, chunk: bytes) -> None:
        if self.escaped:
            chunk, self.escaped = chunk[1:], False
        plain = _ESCAPE.sub(b"", chunk)
        if self.in_string:
            closing = plain.find(b'"')
            if closing < 0:  # the string goes on past this chunk
                self.escaped = _odd_backslashes(chunk)
                return
            plain, self.in_string = plain[closing + 1:], False
        if plain.count(b'"') % 2:  # a string opens and goes on past this chunk
            plain = plain[:plain.rfind(b'"')]
            self.in_string = True
            self.escaped = _odd_backslashes(chunk)
        depth = self.depth
        for byte in _PLAIN_STRING.sub(b"", plain).translate(None, _NOT_BRACKETS):
            depth += 1 if byte in (0x5B, 0x7B) else -1
            if depth > self.max_depth:
                raise _CapExceeded(f"nested deeper than {self.max_depth} levels")
        self.depth = depth


def _odd_backslashes(text: bytes) -> bool:
    return (len(text) - len(text.rstrip(b"\\"))) % 2 == 1


class _Counted:
    """A binary reader that checks what it hands the JSON parser: the whole (decompressed)
    document's size, its nesting, and the bytes read since the last record ended."""

    def __init__(self, raw: BinaryIO, *, max_bytes: int, max_record_bytes: int | None) -> None:
        self.raw, self.max_bytes, self.max_record_bytes = raw, max_bytes, max_record_bytes
        self.count = 0
        self.mark = 0
        self.nesting = _NestingScanner(MAX_DEPTH)

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(_READ_CHUNK if size is None or size < 0 else size)
        self.count += len(chunk)
        if self.count > self.max_bytes:
            raise _CapExceeded(f"the document is larger than {self.max_bytes} bytes "
                               "(NVD_MAX_FILE_BYTES)")
        if self.max_record_bytes is not None and self.count - self.mark > self.max_record_bytes:
            raise _RecordTooLarge()
        self.nesting.feed(chunk)
        return chunk


def _open(path: Path) -> BinaryIO:
    with path.open("rb") as handle:
        magic = handle.read(2)
    # Returned open: the caller's ``with`` closes it.
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # noqa: SIM115


_UNREADABLE = (OSError, EOFError, zlib.error, ijson.JSONError, UnicodeDecodeError)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ijson.JSONError):
        return f"invalid JSON: {str(exc).strip()[:200]}"
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"broken gzip data: {exc}"
    return f"cannot read it: {exc}"


_COUNTS = {"totalResults": "total_results", "resultsPerPage": "results_per_page",
           "startIndex": "start_index"}


def _scalar_header(header: NvdHeader, key: str, value: Any) -> None:
    if key == "format":
        header.format = str(value)[:50]
    elif key == "version":
        header.version = str(value)[:20]
    elif key == "timestamp":
        header.timestamp = str(value)[:50]
    elif key in _COUNTS and isinstance(value, int) and not isinstance(value, bool):
        setattr(header, _COUNTS[key], value)


def _check_header(header: NvdHeader, label: str) -> None:
    if "CVE_Items" in header.keys:
        raise NvdUnreadable(f"{label}: NVD's retired JSON 1.1 feed (CVE_Items); import_nvd "
                            "reads the JSON 2.0 feeds (nvdcve-2.0-*.json) and the CVE API 2.0")
    if header.format and header.format != "NVD_CVE":
        raise NvdUnreadable(f"{label}: format {header.format!r}, not NVD_CVE")
    if header.version and not header.version.startswith("2."):
        raise NvdUnreadable(f"{label}: version {header.version!r}; import_nvd reads NVD's "
                            "CVE JSON 2.0")


def _read_header(path: Path, header: NvdHeader, max_bytes: int) -> None:
    """Read the top-level fields up to the start of the ``vulnerabilities`` list (NVD writes
    them first, so this reads a few kilobytes). Raises ``NvdUnreadable`` when the document
    is no object or has no ``vulnerabilities`` list."""
    label = path.name
    depth = 0
    key = ""
    try:
        with _open(path) as raw:
            reader = _Counted(raw, max_bytes=max_bytes, max_record_bytes=None)
            for _prefix, event, value in ijson.parse(reader, use_float=True):
                if depth == 0 and event != "start_map":
                    raise NvdUnreadable(f"{label}: the document is {_kind(event)}, not an "
                                        "object with a 'vulnerabilities' list")
                if depth == 1 and event == "map_key":
                    key = value
                    header.keys.append(str(value)[:50])
                elif depth == 1 and key == "vulnerabilities":
                    if event == "start_array":
                        _check_header(header, label)
                        return
                    raise NvdUnreadable(f"{label}: 'vulnerabilities' is {_kind(event)}, "
                                        "not a list")
                elif depth == 1 and event not in ("start_map", "start_array", "end_map"):
                    _scalar_header(header, key, value)
                if event in ("start_map", "start_array"):
                    depth += 1
                elif event in ("end_map", "end_array"):
                    depth -= 1
    except _CapExceeded as exc:
        raise NvdUnreadable(f"{label}: {exc}") from None
    except _UNREADABLE as exc:
        raise NvdUnreadable(f"{label}: {_why(exc)}") from exc
    _check_header(header, label)
    raise NvdUnreadable(f"{label}: no 'vulnerabilities' list: not NVD's CVE JSON 2.0")


def _kind(event: str) -> str:
    return {"start_map": "an object", "start_array": "a list", "string": "a string",
            "number": "a number", "boolean": "a boolean", "null": "null"}.get(event, event)


def iter_nvd(path: Path, header: NvdHeader, *, max_bytes: int, max_record_bytes: int
             ) -> Iterator[NvdRecord | FeedError]:
    """The records of one NVD file, streamed; fills ``header``. Raises ``NvdUnreadable``
    when the file is not NVD's CVE JSON 2.0, stops being JSON, passes ``max_bytes``
    decompressed, or holds a record above ``max_record_bytes``: the caller keeps nothing
    of such a file."""
    label = path.name
    _read_header(path, header, max_bytes)
    index = -1
    records = 0
    failures = 0
    first_failure = ""
    try:
        with _open(path) as raw:
            reader = _Counted(raw, max_bytes=max_bytes, max_record_bytes=max_record_bytes)
            for index, item in enumerate(ijson.items(reader, "vulnerabilities.item",
                                                     use_float=True)):
                reader.mark = reader.count
                try:
                    record = parse_cve(item)
                except ValueError as exc:
                    failures += 1
                    cve = _cve_of(item)
                    where = f"{label}:vulnerabilities[{index}]" + (f" ({cve})" if cve else "")
                    first_failure = first_failure or f"{where}: {exc}"
                    yield FeedError(where, str(exc), cve=cve)
                    continue
                records += 1
                yield record
    except _RecordTooLarge:
        raise NvdUnreadable(
            f"{label}: vulnerabilities[{index + 1}] is larger than {max_record_bytes} bytes "
            "(NVD_MAX_RECORD_BYTES)") from None
    except _CapExceeded as exc:
        raise NvdUnreadable(f"{label}: {exc} (in vulnerabilities[{index + 1}])") from None
    except _UNREADABLE as exc:
        raise NvdUnreadable(f"{label}: {_why(exc)} (after vulnerabilities[{index}])") from exc
    if failures and not records:
        raise NvdUnreadable(f"{label}: none of its {failures} entries could be read as an "
                            f"NVD CVE record; the first: {first_failure}")


def _cve_of(item: Any) -> str:
    cve = item.get("cve") if isinstance(item, dict) else None
    value = cve.get("id") if isinstance(cve, dict) else None
    if isinstance(value, str) and CVE_RE.match(value.strip().upper()):
        return value.strip().upper()
    return ""
