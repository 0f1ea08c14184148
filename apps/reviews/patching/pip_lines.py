"""pip requirements files as logical lines: pip's joining, comment and option rules
(split out of manifest_edit).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

_COMMENT = re.compile(r"(^|\s+)#.*$")


def split_lines(text: str) -> list[tuple[str, str]]:
    """``(content, line ending)`` pairs; the ending is "\\n", "\\r\\n" or "" (last line)."""
    lines = []
    pos = 0
    while pos < len(text):
        nl = text.find("\n", pos)
        if nl == -1:
            lines.append((text[pos:], ""))
            break
        if nl > pos and text[nl - 1] == "\r":
            lines.append((text[pos:nl - 1], "\r\n"))
        else:
            lines.append((text[pos:nl], "\n"))
        pos = nl + 1
    return lines


@dataclass
class LogicalLine:
    """One logical line of a requirements file, with a map back to physical columns."""

    indexes: list[int]  # physical line indexes (0-based)
    joined: str
    where: list[tuple[int, int] | None]  # physical (index, column) of each joined char
    req_start: int = 0  # where the requirement text starts in ``joined``
    req_text: str = ""
    req: Requirement | None = None
    options: list[tuple[int, int, str]] | None = None  # option tokens: start, end, text


def logical_lines(lines: list[tuple[str, str]]) -> list[LogicalLine]:
    """pip's ``join_lines``/``ignore_comments``/``break_args_options``, keeping positions."""
    groups: list[list[int]] = []
    current: list[int] = []
    for index, (content, _) in enumerate(lines):
        current.append(index)
        if not content.endswith("\\") or _COMMENT.match(content):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return [_parse_logical(lines, group) for group in groups]


def _parse_logical(lines: list[tuple[str, str]], group: list[int]) -> LogicalLine:
    parts: list[str] = []
    where: list[tuple[int, int] | None] = []
    for index in group:
        content = lines[index][0]
        if content.endswith("\\") and not _COMMENT.match(content):
            start = len(content) - len(content.lstrip("\\"))
            end = max(start, len(content.rstrip("\\")))  # pip: line.strip("\\")
        else:
            start, end = 0, len(content)
            if _COMMENT.match(content):
                parts.append(" ")
                where.append(None)
        parts.append(content[start:end])
        where.extend((index, column) for column in range(start, end))
    joined = "".join(parts)
    logical = LogicalLine(group, joined, where)
    comment = _COMMENT.search(joined)
    body = joined[:comment.start()] if comment else joined
    stripped = body.strip()
    if not stripped or stripped.startswith("-"):
        return logical  # blank, comment or an option line (-r, -e, --index-url...)
    base = len(body) - len(body.lstrip())
    args: list[str] = []
    for token in stripped.split(" "):
        if token.startswith("-"):
            break
        args.append(token)
    args_text = " ".join(args)
    logical.req_start = base
    logical.req_text = args_text.rstrip()
    options_start = base + len(args_text) + 1
    logical.options = [
        (options_start + m.start(), options_start + m.end(), m.group())
        for m in re.finditer(r"\S+", joined[options_start:base + len(stripped)])]
    with contextlib.suppress(InvalidRequirement):  # a URL, a path, a broken line: no pin
        logical.req = Requirement(logical.req_text)
    return logical
