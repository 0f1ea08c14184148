"""Validate one OSV record (https://ossf.github.io/osv-schema/) into a ParsedAdvisory."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import cvss
import yaml

from .matching import ecosystem_kind, normalise_name, parse_pep440, parse_semver, range_problem
from .records import (
    EVENT_KINDS,
    RANGE_TYPES,
    AffectedPackage,
    ParsedAdvisory,
    Range,
    SeverityVector,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_RECORD_BYTES",
    "MAX_YAML_NODES",
    "AdvisoryParseError",
    "load_document",
    "parse_osv",
    "severity_for_score",
]

#: Nesting a document or record may have. An OSV record nests about 7 levels
#: (affected[].ranges[].events[].fixed); free-form `database_specific` gets room to spare.
MAX_DEPTH = 32
#: Size of one record as canonical JSON. PyPA's largest is 17 kB, GHSA's tens of kB.
MAX_RECORD_BYTES = 1024 * 1024
#: Nodes (scalars and collections) of one YAML document. PyYAML's composer spends about
#: 700 bytes and 40 µs on each, so a few MB of `- []` lines would cost gigabytes; a PyPA
#: record has a few hundred nodes.
MAX_YAML_NODES = 100_000


class AdvisoryParseError(Exception):
    """A document or record that cannot be used; `path` says where, `reason` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


# --- documents -------------------------------------------------------------------------------

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _OsvYamlLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that keeps timestamps as text, so YAML and JSON records load alike."""


# Without this, PyYAML turns unquoted RFC 3339 times into datetimes; the record's `raw` then
# would not be JSON and its content hash would differ from the same record served as JSON.
_OsvYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _format_of(path: str, text: str) -> str:
    lowered = path.lower()
    if lowered.endswith((".yaml", ".yml")):
        return "yaml"
    if lowered.endswith(".json"):
        return "json"
    return "json" if text.lstrip()[:1] in ("{", "[") else "yaml"


def _check_yaml_events(text: str, path: str, max_depth: int, max_nodes: int) -> None:
    """Refuse anchors, aliases, deep nesting and too many nodes from the event stream, before
    anything is built.

    OSV never needs anchors or aliases, and aliases are what "billion laughs" documents use to
    grow a few hundred bytes into gigabytes once expanded (serialised, hashed, stored), so a
    record using one is refused, never expanded. The check runs on libyaml's event stream,
    whose memory does not grow with nesting; libyaml's composer, which builds the node tree
    afterwards, recurses in C, so nesting is bounded here first.
    """
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_OsvYamlLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise AdvisoryParseError(path, f"YAML aliases/anchors are not allowed{where}")
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > max_nodes:
                raise AdvisoryParseError(
                    path, f"YAML document has more than {max_nodes} nodes "
                    "(ADVISORY_MAX_YAML_NODES)")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise AdvisoryParseError(path, f"nested deeper than {max_depth} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_document(
    text: str | bytes,
    *,
    path: str,
    fmt: str | None = None,
    max_depth: int = MAX_DEPTH,
    max_yaml_nodes: int = MAX_YAML_NODES,
) -> Any:
    """Parse JSON or YAML (by `fmt`, else extension, else content) into Python data.

    YAML anchors and aliases are refused, and so are nesting deeper than `max_depth` and a
    YAML document of more than `max_yaml_nodes` nodes.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise AdvisoryParseError(path, f"not UTF-8 text: {exc}") from exc
    fmt = fmt or _format_of(path, text)
    if fmt == "json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AdvisoryParseError(path, f"invalid JSON: {exc}") from exc
        except RecursionError as exc:
            raise AdvisoryParseError(path, f"nested deeper than {max_depth} levels") from exc
        _check_depth(document, path, max_depth)
        return document
    try:
        _check_yaml_events(text, path, max_depth, max_yaml_nodes)
        return yaml.load(text, Loader=_OsvYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise AdvisoryParseError(path, f"invalid YAML: {problem}{where}") from exc
    except yaml.YAMLError as exc:
        raise AdvisoryParseError(path, f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise AdvisoryParseError(path, f"nested deeper than {max_depth} levels") from exc


def _members(value: dict | list) -> Iterator[tuple[Any, Any]]:
    return iter(value.items()) if isinstance(value, dict) else enumerate(value)


def _check_depth(document: Any, path: str, max_depth: int) -> None:
    """Refuse data nested deeper than `max_depth`, walking depth-first with one iterator per
    level: memory grows with the depth (bounded), never with the width."""
    if not isinstance(document, (dict, list)):
        return
    stack = [_members(document)]
    while stack:
        for _key, value in stack[-1]:
            if isinstance(value, (dict, list)):
                if len(stack) >= max_depth:
                    raise AdvisoryParseError(path, f"nested deeper than {max_depth} levels")
                stack.append(_members(value))
                break
        else:
            stack.pop()


def _where(parent: str, key: Any, in_mapping: bool) -> str:
    if in_mapping:
        return f"{parent}.{key}" if parent else str(key)
    return f"{parent}[{key}]"


def _check_plain(record: Mapping[str, Any], path: str, max_depth: int) -> None:
    """The record must be plain JSON data that every database stores as it is.

    PostgreSQL refuses NUL in text and in jsonb, and NaN/Infinity in jsonb; YAML can also
    produce bytes (`!!binary`), sets or non-string keys. Each is refused here, with where it is,
    so that it fails this record alone and says why. Walked like `_check_depth`.
    """
    stack: list[tuple[Iterator[tuple[Any, Any]], str, bool]] = [
        (_members(dict(record)), "", True)
    ]
    while stack:
        members, parent, in_mapping = stack[-1]
        for key, value in members:
            if in_mapping:
                if not isinstance(key, str):
                    raise _fail(path, parent, f"has a key of type {type(key).__name__} "
                                f"({key!r}); JSON keys are strings")
                if "\x00" in key:
                    raise _fail(path, parent, "has a key with a NUL character (\\u0000)")
            if isinstance(value, str):
                if "\x00" in value:
                    raise _fail(path, _where(parent, key, in_mapping),
                                "holds a NUL character (\\u0000), which is not stored")
            elif value is None or isinstance(value, (bool, int)):
                continue
            elif isinstance(value, float):
                if not math.isfinite(value):
                    raise _fail(path, _where(parent, key, in_mapping),
                                f"holds {value!r}, which is not a JSON number")
            elif isinstance(value, (dict, list)):
                where = _where(parent, key, in_mapping)
                if len(stack) >= max_depth:
                    raise _fail(path, where, f"nested deeper than {max_depth} levels")
                stack.append((_members(value), where, isinstance(value, dict)))
                break
            else:
                raise _fail(path, _where(parent, key, in_mapping),
                            f"holds a value of type {type(value).__name__}, "
                            "which is not JSON data")
        else:
            stack.pop()


# --- small typed getters -------------------------------------------------------------------


def _fail(path: str, where: str, reason: str) -> AdvisoryParseError:
    return AdvisoryParseError(path, f"{where}: {reason}" if where else reason)


def _text(value: Any, path: str, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(path, where, f"must be a string, got {type(value).__name__} {value!r}")
    return value


def _items(value: Any, path: str, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(path, where, f"must be a list, got {type(value).__name__}")
    return value


def _mapping(value: Any, path: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, where, f"must be a mapping, got {type(value).__name__}")
    return value


def _timestamp(value: Any, path: str, where: str) -> datetime | None:
    """RFC 3339 time (OSV § modified/published/withdrawn) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        # RFC 3339 § 5.6 allows a lower-case "t"/"z" and a space separator.
        if len(text) > 10 and text[10] in "tT ":
            text = f"{text[:10]}T{text[11:]}"
        if text[-1:] in ("z", "Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise _fail(path, where, f"invalid RFC 3339 timestamp {value!r}") from exc
    else:
        raise _fail(path, where, f"must be an RFC 3339 timestamp, got {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # OSV times are UTC; a missing offset means UTC.
    return moment.astimezone(UTC)


# --- severity ------------------------------------------------------------------------------

_CVSS_CLASSES: dict[str, type] = {
    "CVSS_V2": cvss.CVSS2,
    "CVSS_V3": cvss.CVSS3,
    "CVSS_V4": cvss.CVSS4,
}
# GHSA's database_specific.severity words; MODERATE is GitHub's name for CVSS "medium".
_GHSA_SEVERITY = {
    "critical": "critical",
    "high": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "none": "none",
}


def severity_for_score(score: float) -> str:
    """CVSS v3/v4 qualitative band (also applied to v2 scores, as agreed for this app)."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "none"


def _cvss_rank(vector: SeverityVector) -> tuple[int, int]:
    """Newer CVSS versions first: v4 > v3.1 > v3.0 > v2."""
    if vector.type == "CVSS_V4":
        return (4, 0)
    if vector.type == "CVSS_V3":
        return (3, 1) if vector.vector.startswith("CVSS:3.1/") else (3, 0)
    return (2, 0)


def _severity_vector(entry: Any, path: str, where: str) -> SeverityVector:
    entry = _mapping(entry, path, where)
    kind = _text(entry.get("type"), path, f"{where}.type")
    vector = _text(entry.get("score"), path, f"{where}.score").strip()
    if not kind:
        raise _fail(path, f"{where}.type", "missing severity type")
    cls = _CVSS_CLASSES.get(kind)
    if cls is None:
        return SeverityVector(type=kind, vector=vector, base_score=None)  # e.g. Ubuntu
    try:
        score = float(cls(vector).base_score)
    except (cvss.CVSSError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise _fail(path, where, f"malformed {kind} vector {vector!r}: {exc}") from exc
    return SeverityVector(type=kind, vector=vector, base_score=score)


def _severity(
    vectors: tuple[SeverityVector, ...], database_specific: Mapping[str, Any]
) -> tuple[float | None, str]:
    scored = [v for v in vectors if v.base_score is not None]
    if scored:
        # cvss_score: newest CVSS version wins; within one version the higher score.
        best = max(scored, key=lambda v: (_cvss_rank(v), v.base_score))
        highest = max(v.base_score for v in scored if v.base_score is not None)
        return best.base_score, severity_for_score(highest)
    label = database_specific.get("severity")
    if isinstance(label, str):
        return None, _GHSA_SEVERITY.get(label.strip().lower(), "unknown")
    return None, "unknown"


_CWE_RE = re.compile(r"^(?:CWE-)?(\d+)$", re.IGNORECASE)


def _cwe_ids(database_specific: Mapping[str, Any]) -> tuple[str, ...]:
    """GHSA `database_specific.cwe_ids` as `CWE-<n>`; NVD placeholders are dropped."""
    raw = database_specific.get("cwe_ids")
    found: dict[str, None] = {}
    for item in raw if isinstance(raw, list) else []:
        match = _CWE_RE.match(str(item).strip())
        if match:
            found.setdefault(f"CWE-{int(match.group(1))}", None)
    return tuple(found)


# --- affected ------------------------------------------------------------------------------


def _check_version(value: str, range_type: str, kind: str, path: str, where: str) -> None:
    """PEP 440 for PyPI ECOSYSTEM values, SemVer 2.0.0 for SEMVER ranges; others are opaque."""
    if range_type == "SEMVER":
        if parse_semver(value) is None:
            raise _fail(path, where, f"invalid SemVer version {value!r}")
    elif range_type == "ECOSYSTEM" and kind == "pypi" and parse_pep440(value) is None:
        raise _fail(path, where, f"invalid PEP 440 version {value!r}")


def _range(entry: Any, kind: str, path: str, where: str, strict: bool) -> Range:
    entry = _mapping(entry, path, where)
    range_type = _text(entry.get("type"), path, f"{where}.type")
    if range_type not in RANGE_TYPES:
        allowed = ", ".join(RANGE_TYPES)
        raise _fail(path, where, f"unknown range type {range_type!r} (OSV allows {allowed})")
    events: list[tuple[str, str]] = []
    for e_index, event in enumerate(_items(entry.get("events"), path, f"{where}.events")):
        e_where = f"{where}.events[{e_index}]"
        event = _mapping(event, path, e_where)
        unknown = sorted(str(key) for key in event if key not in EVENT_KINDS)
        if unknown:
            allowed = ", ".join(EVENT_KINDS)
            raise _fail(path, e_where, f"unknown event key {unknown[0]!r} (OSV allows {allowed})")
        if len(event) != 1:
            # OSV § Requirements: each event object holds exactly one key.
            raise _fail(path, e_where, f"an event needs exactly one key, got {len(event)}")
        ((event_kind, value),) = event.items()
        value = _text(value, path, f"{e_where}.{event_kind}")
        if not value:
            raise _fail(path, e_where, f"empty {event_kind} value")
        # "0" means "before every version" and a `limit` with "*" means infinity (OSV § Special
        # values); neither has to be a valid version of the ecosystem.
        special = value == "0" or (event_kind == "limit" and "*" in value)
        if strict and not special:
            _check_version(value, range_type, kind, path, e_where)
        events.append((event_kind, value))
    if not events:
        raise _fail(path, where, "range has no events")
    if not any(event_kind == "introduced" for event_kind, _ in events):
        # OSV § Requirements: at least one `introduced` per events array.
        raise _fail(path, where, "range has no 'introduced' event")
    repo = _text(entry.get("repo"), path, f"{where}.repo")
    rng = Range(type=range_type, events=tuple(events), repo=repo)
    if not strict:
        # Kept, and marked: matching falls back to the record's `versions`, or else to
        # "possibly affected" (see matching.possibly_affected).
        problem = range_problem(rng, kind)
        if problem:
            rng = Range(type=range_type, events=rng.events, repo=repo, unparseable=problem)
    return rng


def _affected(entry: Any, path: str, where: str, strict: bool) -> AffectedPackage:
    entry = _mapping(entry, path, where)
    package = entry.get("package")
    ecosystem = name = purl = ""
    # `package` may be absent on GIT-only entries (OSV § Separating Git and Strict Ecosystems).
    if package is not None:
        package = _mapping(package, path, f"{where}.package")
        ecosystem = _text(package.get("ecosystem"), path, f"{where}.package.ecosystem").strip()
        name = _text(package.get("name"), path, f"{where}.package.name").strip()
        purl = _text(package.get("purl"), path, f"{where}.package.purl")
        if not ecosystem or not name:
            raise _fail(path, f"{where}.package", "needs both 'ecosystem' and 'name'")
    kind = ecosystem_kind(ecosystem)
    ranges = tuple(
        _range(rng, kind, path, f"{where}.ranges[{index}]", strict)
        for index, rng in enumerate(_items(entry.get("ranges"), path, f"{where}.ranges"))
    )
    versions: list[str] = []
    for index, value in enumerate(_items(entry.get("versions"), path, f"{where}.versions")):
        v_where = f"{where}.versions[{index}]"
        if not isinstance(value, str):
            # YAML reads an unquoted 1.10 as the float 1.1; refuse rather than guess.
            raise _fail(path, v_where, f"must be a string, got {type(value).__name__} {value!r}")
        # Explicit versions are the ecosystem's own strings (OSV § affected[].versions), and
        # PyPI still serves pre-PEP 440 releases such as "0.7.1.fix1" or "0.1-bulbasaur":
        # they are kept and matched by exact string. Only range events must be orderable.
        versions.append(value)
    return AffectedPackage(
        ecosystem=ecosystem,
        name=name,
        normalised_name=normalise_name(ecosystem, name) if name else "",
        purl=purl,
        ranges=ranges,
        versions=tuple(versions),
    )


# --- record --------------------------------------------------------------------------------


def _canonical(raw: Mapping[str, Any], path: str = "") -> bytes:
    try:
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as exc:
        raise AdvisoryParseError(path, f"record cannot be serialised as JSON: {exc}") from exc
    return canonical.encode("utf-8")


def content_hash(raw: Mapping[str, Any], path: str = "") -> str:
    """sha256 of the canonical JSON form, so an unchanged record is recognised on re-import."""
    return hashlib.sha256(_canonical(raw, path)).hexdigest()


def parse_osv(
    data: Any,
    *,
    path: str = "",
    strict: bool = True,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_depth: int = MAX_DEPTH,
) -> ParsedAdvisory:
    """Validate one OSV record; raises AdvisoryParseError with the path and the reason.

    `strict=False` keeps version strings that are not PEP 440 / SemVer instead of refusing
    the record (PyPI still lists pre-PEP 440 releases such as `0.7.1.fix1`): a range event
    that is not one marks its range `unparseable` with the reason, and matching skips it.
    The importer parses with `strict=False`.

    Whatever the mode, the record must be plain JSON data (no NUL, NaN, bytes, non-string
    keys), nested at most `max_depth` levels and at most `max_record_bytes` as canonical JSON.
    """
    if not isinstance(data, Mapping):
        raise AdvisoryParseError(path, f"record is not a mapping (got {type(data).__name__})")
    _check_plain(data, path, max_depth)
    canonical = _canonical(data, path)
    if len(canonical) > max_record_bytes:
        raise AdvisoryParseError(
            path, f"record is {len(canonical)} bytes as JSON, above the cap of "
            f"{max_record_bytes} bytes (ADVISORY_MAX_RECORD_BYTES)")
    advisory_id = data.get("id")
    if not isinstance(advisory_id, str) or not advisory_id.strip():
        raise AdvisoryParseError(path, "missing or empty 'id'")
    advisory_id = advisory_id.strip()
    aliases = tuple(
        _text(alias, path, f"aliases[{index}]")
        for index, alias in enumerate(_items(data.get("aliases"), path, "aliases"))
    )
    database_specific = data.get("database_specific")
    if not isinstance(database_specific, Mapping):
        database_specific = {}

    affected_entries = _items(data.get("affected"), path, "affected")
    vectors = [
        _severity_vector(entry, path, f"severity[{index}]")
        for index, entry in enumerate(_items(data.get("severity"), path, "severity"))
    ]
    # Per-package severity (OSV § affected[].severity) counts too, once per distinct vector.
    for a_index, entry in enumerate(affected_entries):
        if isinstance(entry, Mapping):
            a_where = f"affected[{a_index}].severity"
            for s_index, item in enumerate(_items(entry.get("severity"), path, a_where)):
                vector = _severity_vector(item, path, f"{a_where}[{s_index}]")
                if all((v.type, v.vector) != (vector.type, vector.vector) for v in vectors):
                    vectors.append(vector)
    cvss_score, severity = _severity(tuple(vectors), database_specific)

    references = tuple(
        dict(_mapping(ref, path, f"references[{index}]"))
        for index, ref in enumerate(_items(data.get("references"), path, "references"))
    )
    affected = tuple(
        _affected(entry, path, f"affected[{index}]", strict)
        for index, entry in enumerate(affected_entries)
    )
    raw = dict(data)
    return ParsedAdvisory(
        id=advisory_id,
        aliases=aliases,
        summary=_text(data.get("summary"), path, "summary"),
        details=_text(data.get("details"), path, "details"),
        published=_timestamp(data.get("published"), path, "published"),
        modified=_timestamp(data.get("modified"), path, "modified"),
        withdrawn=_timestamp(data.get("withdrawn"), path, "withdrawn"),
        severity_vectors=tuple(vectors),
        cvss_score=cvss_score,
        severity=severity,
        cwe_ids=_cwe_ids(database_specific),
        references=references,
        affected=affected,
        raw=raw,
        content_hash=hashlib.sha256(canonical).hexdigest(),
        size=len(canonical),
    )
