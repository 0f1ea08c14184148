"""Line-level rules of pip's requirements-file format.

Reference: https://pip.pypa.io/en/stable/reference/requirements-file-format/
The joining, comment and option-splitting rules mirror pip's own
``pip/_internal/req/req_file.py`` so line numbers match what pip reports.
Requirements themselves are parsed with ``packaging.requirements`` (PEP 508).

The one copy of these rules: the inventory reads requirements files with
:func:`logical_lines`, and the reviews' pin editor (``apps/reviews/patching/manifest_edit``)
rewrites them through :func:`split_lines`/:func:`join_lines`, whose :class:`LogicalLine`
maps every character back to its physical line and column.
"""

from __future__ import annotations

import bisect
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

# Only used to *recognise* a URL (scheme://), never to parse a requirement.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ARCHIVE_SUFFIXES = (
    ".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip",
)

# Options whose value is the next token when not attached ("-r file" / "-rfile" /
# "--requirement=file"). Everything else is treated as a flag.
_VALUE_OPTIONS = frozenset({
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable",
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links",
    "--no-binary", "--only-binary", "--trusted-host", "--use-feature",
    "--hash", "--config-settings", "--global-option", "--install-option",
})
_SHORT_VALUE_OPTIONS = frozenset({"-r", "-c", "-e", "-i", "-f"})
_LONG_ALIASES = {"--requirement": "-r", "--constraint": "-c", "--editable": "-e"}


def split_lines(text: str) -> Iterator[tuple[str, str]]:
    """Physical lines as ``(content, ending)`` pairs, lazily; ``content + ending`` is the
    line exactly as written.

    A line ends at "\\n"; "\\r" characters before it belong to the ending (so a CRLF
    file, or a stray "\\r\\r\\n", reads like an LF one). The last line may have no
    "\\n": its ending is then its trailing "\\r" characters, or "".
    """
    position = 0
    while position < len(text):
        newline = text.find("\n", position)
        end = len(text) if newline == -1 else newline
        raw = text[position:end]
        content = raw.rstrip("\r")
        yield content, raw[len(content):] + ("" if newline == -1 else "\n")
        position = end + 1


class RequirementPart(NamedTuple):
    """A logical line split into its requirement and the options that follow it."""

    start: int  # where the requirement text starts in LogicalLine.joined
    text: str  # the requirement as written; "" on a blank or option-only line
    option_text: str  # what :func:`parse_options` reads
    # The options after a requirement as (start, end, token) in joined: whitespace-
    # separated tokens ("--hash=sha256:..", or "--hash" then its value).
    options: list[tuple[int, int, str]]


@dataclass
class LogicalLine:
    """One logical line of a requirements file, with a map back to its physical lines.

    ``joined`` is pip's ``join_lines`` result (continuation backslashes removed, a " "
    put before a comment line that ends a continuation); ``content`` is ``joined``
    without its comment and surrounding whitespace (pip's ``ignore_comments``), what
    the requirement and its options are read from.
    """

    indexes: list[int]  # the physical lines it covers (0-based)
    joined: str
    # One (start in joined, physical line index, column) per piece of joined text: a
    # physical line's content, or the " " before a comment line (index None).
    pieces: list[tuple[int, int | None, int]]
    start: int  # content is joined[start:end]
    end: int

    @property
    def number(self) -> int:
        """The 1-based line the logical line starts on (the line pip reports)."""
        return self.indexes[0] + 1

    @property
    def content(self) -> str:
        return self.joined[self.start:self.end]

    @cached_property
    def requirement(self) -> RequirementPart:
        """pip's ``break_args_options`` on ``content``, with positions in ``joined``."""
        args, options = split_args_options(self.content)
        if not args:
            return RequirementPart(self.start, "", options, [])
        at = self.end - len(options)
        tokens = [(at + m.start(), at + m.end(), m.group())
                  for m in re.finditer(r"\S+", options)]
        return RequirementPart(self.start, args, options, tokens)

    def physical_span(self, start: int, end: int) -> tuple[int, int, int] | None:
        """``(line index, start column, end column)`` of ``joined[start:end]``, or None
        when that text is empty or not all on one physical line."""
        at = bisect.bisect_right(self.pieces, start, key=lambda piece: piece[0]) - 1
        if start >= end or at < 0:
            return None
        offset, index, column = self.pieces[at]
        limit = self.pieces[at + 1][0] if at + 1 < len(self.pieces) else len(self.joined)
        if index is None or end > limit:
            return None
        return index, column + start - offset, column + end - offset


def join_lines(lines: Iterable[tuple[str, str]]) -> Iterator[LogicalLine]:
    """Group physical ``(content, ending)`` lines into logical lines, as pip does.

    A trailing backslash continues a line unless the line is a comment (pip's
    ``join_lines``); the comment rule is :func:`strip_comment`'s (pip's
    ``ignore_comments``). Blank and comment-only logical lines are included, with an
    empty ``content``.
    """
    indexes: list[int] = []
    parts: list[str] = []
    pieces: list[tuple[int, int | None, int]] = []
    length = 0
    for index, (content, _) in enumerate(lines):
        is_comment = content.lstrip().startswith("#")
        continued = content.endswith("\\") and not is_comment
        start = 0
        if continued:  # pip: line.strip("\\")
            start = len(content) - len(content.lstrip("\\"))
            piece = content[start:max(start, len(content.rstrip("\\")))]
        else:
            piece = content
            if is_comment:  # so the comment rule still matches once joined
                parts.append(" ")
                pieces.append((length, None, 0))
                length += 1
        parts.append(piece)
        pieces.append((length, index, start))
        length += len(piece)
        indexes.append(index)
        if not continued:
            yield _logical(indexes, parts, pieces)
            indexes, parts, pieces, length = [], [], [], 0
    if indexes:
        yield _logical(indexes, parts, pieces)


def _logical(indexes: list[int], parts: list[str],
             pieces: list[tuple[int, int | None, int]]) -> LogicalLine:
    joined = "".join(parts)
    body = strip_comment(joined)
    start = len(body) - len(body.lstrip())
    return LogicalLine(indexes, joined, pieces, start, start + len(body.strip()))


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(first_line_number, content)`` for each non-blank logical line.

    The number is that of the line the logical line starts on (see :func:`join_lines`).
    """
    for line in join_lines(split_lines(text)):
        content = line.content
        if content:
            yield line.number, content


def strip_comment(line: str) -> str:
    """``line`` without its comment: from the first "#" at the start or after whitespace.

    pip: a comment starts at "#" at the beginning of a line or after whitespace, so
    "pkg#egg" style URL fragments are not comments. pip writes this as the regular
    expression ``(^|\\s+)#.*$``, whose search is quadratic in a run of spaces (32,000
    spaces took 18 s): this applies the same rule in one pass.
    """
    at = line.find("#")
    while at != -1:
        if at == 0 or line[at - 1].isspace():
            return line[:at]
        at = line.find("#", at + 1)
    return line


def split_args_options(line: str) -> tuple[str, str]:
    """Split a line into the requirement part and the option part (pip's ``break_args_options``)."""
    tokens = line.split(" ")
    args: list[str] = []
    for position, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(args).strip(), " ".join(tokens[position:]).strip()
        args.append(token)
    return " ".join(args).strip(), ""


def parse_options(text: str) -> list[tuple[str, str | None]]:
    """Tokenise an option string into ``(option, value)`` pairs.

    ``--requirement``/``--constraint``/``--editable`` are reported under their
    short names. Raises ``ValueError`` for unbalanced quotes or a missing value.
    """
    tokens = shlex.split(text, comments=False, posix=True)
    pairs: list[tuple[str, str | None]] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if token.startswith("--"):
            name, equals, value = token.partition("=")
            if not equals and name in _VALUE_OPTIONS:
                if position >= len(tokens):
                    raise ValueError(f"{name} option requires 1 argument")
                value = tokens[position]
                position += 1
            pairs.append((_LONG_ALIASES.get(name, name), value if value or equals else None))
        elif token.startswith("-") and len(token) > 1:
            name = token[:2]
            if name in _SHORT_VALUE_OPTIONS:
                if len(token) > 2:
                    pairs.append((name, token[2:].lstrip("=")))
                elif position < len(tokens):
                    pairs.append((name, tokens[position]))
                    position += 1
                else:
                    raise ValueError(f"{name} option requires 1 argument")
            else:
                pairs.append((token, None))
        else:
            pairs.append(("", token))  # stray value; pip would reject it, we ignore it
    return pairs


@dataclass(frozen=True)
class RequirementInfo:
    """The fields of one requirement needed for a ParsedDependency."""

    name: str
    specifier: str
    version: str | None
    extras: tuple[str, ...] = ()
    marker: str = ""


def pinned_version(specifier: SpecifierSet) -> str | None:
    """The version when the specifier is exactly ``==X`` or ``===X`` (PEP 440), else None.

    A prefix match such as ``==1.2.*`` is not a pin, and neither is a pin combined
    with other clauses: we only trust what the author wrote as a single pin.
    """
    specs = list(specifier)
    if len(specs) != 1:
        return None
    spec = specs[0]
    if spec.operator == "===" or (spec.operator == "==" and not spec.version.endswith("*")):
        return spec.version
    return None


def _specifier_as_written(req: Requirement, text: str) -> str:
    """The version specifier exactly as the author wrote it, minus whitespace.

    packaging sorts clauses when printing a SpecifierSet, so we cut the text
    packaging already validated: drop the marker, the name and the extras.
    """
    if req.url or not req.specifier:
        return ""
    body = text.split(";", 1)[0].strip() if req.marker else text.strip()
    if body.startswith(req.name):
        body = body[len(req.name):].lstrip()
        if body.startswith("["):
            body = body.partition("]")[2]
        body = "".join(body.split())
        if body.startswith("(") and body.endswith(")"):
            body = body[1:-1]  # legacy "name (>=1.0)" form
        try:
            if SpecifierSet(body) == req.specifier:
                return body
        except InvalidSpecifier:
            pass
    return str(req.specifier)


def from_requirement(req: Requirement, text: str) -> RequirementInfo:
    """Fields of a PEP 508 requirement; direct references (``name @ url``) are unpinned."""
    version = None if req.url else pinned_version(req.specifier)
    return RequirementInfo(
        name=req.name,
        specifier=_specifier_as_written(req, text),
        version=version,
        extras=tuple(sorted(req.extras)),
        marker=str(req.marker) if req.marker else "",
    )


def looks_like_url(text: str) -> bool:
    """pip accepts bare URLs (``https://...``, ``git+https://...``) as requirements."""
    return bool(_URL_SCHEME.match(text))


def _looks_like_path(text: str) -> bool:
    if any(char.isspace() for char in text):
        return False
    return (
        text.startswith((".", "/", "~", "\\"))
        or "/" in text
        or "\\" in text
        or text.lower().endswith(_ARCHIVE_SUFFIXES)
    )


def _name_from_filename(filename: str) -> str | None:
    """Project name from a wheel or sdist filename, which the filename conventions fix.

    packaging validates the filename and returns the canonical name; we keep the
    spelling of the filename itself when it is the same project.
    """
    try:
        if filename.endswith(".whl"):
            canonical = parse_wheel_filename(filename)[0]
            written = filename.split("-", 1)[0]
        else:
            canonical = parse_sdist_filename(filename)[0]
            written = filename.rsplit("-", 1)[0]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return written if canonicalize_name(written) == canonical else str(canonical)


def _named(name: str, extras: tuple[str, ...] = (), marker: str = "") -> RequirementInfo:
    return RequirementInfo(name=name, specifier="", version=None, extras=extras, marker=marker)


def from_url(text: str) -> RequirementInfo | None:
    """A bare URL / VCS requirement: named by ``#egg=`` or its archive filename, unpinned.

    Returns None when the name cannot be known without fetching the URL.
    """
    url, marker = text, ""
    if "; " in text:  # pip splits URL markers on "; " since URLs may contain ";"
        url, marker = (part.strip() for part in text.split("; ", 1))
        marker = str(Marker(marker))
    parts = urlsplit(url)
    egg = parse_qs(parts.fragment).get("egg")
    if egg:
        req = Requirement(egg[0])  # "name" or "name[extra]"
        return _named(req.name, tuple(sorted(req.extras)), marker)
    name = _name_from_filename(unquote(parts.path.rsplit("/", 1)[-1]))
    return _named(name, (), marker) if name else None


def from_path(text: str) -> RequirementInfo | None:
    """A local archive (``./dist/pkg-1.0.tar.gz``); local directories cannot be named."""
    path, extras = text, ()
    if path.endswith("]") and "[" in path:
        path, _, extra_text = path[:-1].rpartition("[")
        extras = tuple(sorted(e.strip() for e in extra_text.split(",") if e.strip()))
    name = _name_from_filename(path.replace("\\", "/").rsplit("/", 1)[-1])
    return _named(name, extras) if name else None


def parse_requirement_text(text: str) -> RequirementInfo | None:
    """Parse the requirement part of a line.

    Returns None for a URL or path whose project name cannot be determined.
    Raises ``InvalidRequirement`` (or ``InvalidMarker``) with packaging's message.
    """
    if looks_like_url(text):
        return from_url(text)
    try:
        req = Requirement(text)
    except InvalidRequirement:
        if _looks_like_path(text):
            return from_path(text)
        raise
    return from_requirement(req, text)


def parse_editable(value: str) -> RequirementInfo | None:
    """An ``-e`` target: a VCS URL with ``#egg=`` is named; a local directory is not.

    pip only accepts a local project path or a VCS URL after ``-e``.
    """
    return from_url(value) if looks_like_url(value) else None
