"""OSV advisory ingestion and matching, free of Django (https://ossf.github.io/osv-schema/)."""

from .matching import (
    AdvisoryIndex,
    fixed_versions_for,
    in_ranges,
    in_versions,
    is_affected,
    normalise_name,
    possibly_affected,
    unorderable_reason,
)
from .parser import AdvisoryParseError, load_document, parse_osv
from .records import AffectedPackage, ParsedAdvisory, Range, SeverityVector
from .sources import Limits, RawRecord, RecordError, iter_source

__all__ = [
    "AdvisoryIndex",
    "AdvisoryParseError",
    "AffectedPackage",
    "Limits",
    "ParsedAdvisory",
    "Range",
    "RawRecord",
    "RecordError",
    "SeverityVector",
    "fixed_versions_for",
    "in_ranges",
    "in_versions",
    "is_affected",
    "iter_source",
    "load_document",
    "normalise_name",
    "parse_osv",
    "possibly_affected",
    "unorderable_reason",
]
