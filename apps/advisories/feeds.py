"""Exploitation evidence feeds, parsed into plain dataclasses (no ORM, like ``osv/``).

- FIRST's daily EPSS file ``epss_scores-YYYY-MM-DD.csv[.gz]``
  (https://www.first.org/epss/data_stats): a comment line
  ``#model_version:v2025.03.14,score_date:2026-12-05T00:00:00+0000``, the header
  ``cve,epss,percentile``, then one row per CVE.
- CISA's ``known_exploited_vulnerabilities.json`` (https://www.cisa.gov/known-exploited-
  vulnerabilities-catalog): ``{"title", "catalogVersion", "dateReleased", "count",
  "vulnerabilities": [{"cveID", "vendorProject", "product", "vulnerabilityName",
  "dateAdded", "shortDescription", "requiredAction", "dueDate",
  "knownRansomwareCampaignUse", "notes", "cwes"}]}``.

A row that cannot be used is a ``FeedError`` (where, why), yielded in place of the row: the
caller reports it and goes on. Only a file that is not the format at all (no header, not
JSON, no ``vulnerabilities`` list) raises ``FeedUnreadable``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

CVE_RE = re.compile(r"^CVE-\d{4}-\d{4,}$")
#: Longest text kept per KEV field (the catalog's are a few hundred characters).
_MAX_TEXT = 10_000


class FeedUnreadable(Exception):
    """The file is not the expected format at all; nothing was imported."""


@dataclass(frozen=True)
class FeedError:
    where: str
    reason: str
    #: The CVE of the refused row when it could be read (a KEV import keeps its entry).
    cve: str = ""


@dataclass(frozen=True)
class EpssRow:
    cve: str
    score: float
    percentile: float


@dataclass
class EpssHeader:
    model_version: str = ""
    score_date: date | None = None


@dataclass(frozen=True)
class KevRow:
    cve: str
    vendor_project: str
    product: str
    vulnerability_name: str
    date_added: date
    short_description: str
    required_action: str
    due_date: date | None
    known_ransomware_campaign_use: str
    notes: str
    cwes: tuple[str, ...] = field(default=())


@dataclass
class KevCatalog:
    title: str
    catalog_version: str
    date_released: str
    count: int | None
    rows: list[KevRow | FeedError]


def _open_text(path: Path) -> io.TextIOBase:
    """The file as text, gunzipped when it starts with the gzip magic (whatever its name)."""
    with path.open("rb") as handle:
        magic = handle.read(2)
    # Returned open: the caller's ``with`` closes it.
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _parse_header_comment(line: str) -> EpssHeader:
    header = EpssHeader()
    for part in line.lstrip("#").strip().split(","):
        key, _, value = part.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model_version":
            header.model_version = value[:50]
        elif key == "score_date" and value:
            try:
                header.score_date = datetime.fromisoformat(value).date()
            except ValueError:
                header.score_date = _date_prefix(value)
    return header


def _date_prefix(value: str) -> date | None:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _probability(text: str) -> float:
    value = float(text)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{text!r} is not between 0 and 1")
    return value


def iter_epss(path: Path, header: EpssHeader) -> Iterator[EpssRow | FeedError]:
    """Rows of an EPSS file, streamed (the daily file has ~300,000); fills ``header`` from
    the comment line. Raises ``FeedUnreadable`` when there is no ``cve,epss,percentile``
    header."""
    label = path.name
    try:
        handle = _open_text(path)
    except OSError as exc:
        raise FeedUnreadable(f"cannot read {label}: {exc}") from exc
    with handle:
        line = 1
        try:
            first = handle.readline()
            while first.startswith("#"):
                line += 1
                found = _parse_header_comment(first)
                header.model_version = found.model_version or header.model_version
                header.score_date = found.score_date or header.score_date
                first = handle.readline()
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
            raise FeedUnreadable(f"cannot read {label}: {exc}") from exc
        columns = [c.strip().lower() for c in first.strip().split(",")]
        if not {"cve", "epss", "percentile"} <= set(columns):
            raise FeedUnreadable(f"{label}: no 'cve,epss,percentile' header "
                                 f"(found {first.strip()[:80]!r})")
        at = {name: columns.index(name) for name in ("cve", "epss", "percentile")}
        reader = csv.reader(handle)
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, csv.Error) as exc:
                yield FeedError(f"{label}:{line + 1}", f"file ends unreadably: {exc}")
                return
            line += 1
            if not values or not any(v.strip() for v in values):
                continue
            where = f"{label}:{line}"
            try:
                cve = values[at["cve"]].strip().upper()
                score = _probability(values[at["epss"]].strip())
                percentile = _probability(values[at["percentile"]].strip())
            except IndexError:
                yield FeedError(where, f"{len(values)} columns, expected {len(columns)}")
                continue
            except ValueError as exc:
                yield FeedError(where, f"not a probability: {exc}")
                continue
            if not CVE_RE.match(cve):
                yield FeedError(where, f"not a CVE id: {cve[:60]!r}")
                continue
            yield EpssRow(cve=cve, score=score, percentile=percentile)


def _text(entry: dict, key: str) -> str:
    value = entry.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    if "\x00" in value:
        raise ValueError(f"{key} holds a NUL character")
    return value[:_MAX_TEXT]


def _kev_row(entry: object) -> KevRow:
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    cve = _text(entry, "cveID").strip().upper()
    if not CVE_RE.match(cve):
        raise ValueError(f"cveID is not a CVE id: {cve[:60]!r}")
    added_text = _text(entry, "dateAdded")
    try:
        added = date.fromisoformat(added_text[:10])
    except ValueError:
        raise ValueError(f"dateAdded is not a date: {added_text[:40]!r}") from None
    due_text = _text(entry, "dueDate")
    due = _date_prefix(due_text) if due_text else None
    cwes = entry.get("cwes") or []
    if not isinstance(cwes, list) or not all(isinstance(c, str) for c in cwes):
        raise ValueError("cwes is not a list of strings")
    return KevRow(
        cve=cve, vendor_project=_text(entry, "vendorProject")[:300],
        product=_text(entry, "product")[:300],
        vulnerability_name=_text(entry, "vulnerabilityName")[:500], date_added=added,
        short_description=_text(entry, "shortDescription"),
        required_action=_text(entry, "requiredAction"), due_date=due,
        known_ransomware_campaign_use=_text(entry, "knownRansomwareCampaignUse")[:50],
        notes=_text(entry, "notes"), cwes=tuple(c[:50] for c in cwes[:50]),
    )


def parse_kev(path: Path, *, max_bytes: int) -> KevCatalog:
    """The catalog with one ``KevRow`` or ``FeedError`` per entry. Raises ``FeedUnreadable``
    when the file is too big, not JSON, or has no ``vulnerabilities`` list."""
    label = path.name
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FeedUnreadable(f"{label} is {size} bytes, above the cap of {max_bytes}")
        with _open_text(path) as handle:
            text = handle.read(max_bytes + 1)
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise FeedUnreadable(f"cannot read {label}: {exc}") from exc
    if len(text) > max_bytes:
        raise FeedUnreadable(f"{label} inflates past the cap of {max_bytes} bytes")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FeedUnreadable(f"{label}: invalid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("vulnerabilities"), list):
        raise FeedUnreadable(f"{label}: no 'vulnerabilities' list: not CISA's KEV catalog")
    rows: list[KevRow | FeedError] = []
    for index, entry in enumerate(document["vulnerabilities"]):
        try:
            rows.append(_kev_row(entry))
        except ValueError as exc:
            cve = entry.get("cveID") if isinstance(entry, dict) else None
            cve = cve.strip().upper()[:50] if isinstance(cve, str) else ""
            where = f"{label}:vulnerabilities[{index}]" + (f" ({cve})" if cve else "")
            rows.append(FeedError(where, str(exc), cve=cve))
    count = document.get("count")
    return KevCatalog(
        title=str(document.get("title", ""))[:200],
        catalog_version=str(document.get("catalogVersion", ""))[:50],
        date_released=str(document.get("dateReleased", ""))[:50],
        count=count if isinstance(count, int) else None, rows=rows,
    )
