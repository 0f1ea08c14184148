"""Map keys of JSON and TOML documents back to source line numbers.

``json`` and ``tomllib`` do not report positions, so after a document has been
parsed successfully we scan its raw text once and build an index from the
*path* of each key to its 1-based line. Parsers then look lines up in the
index instead of re-searching the text for every package.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

JsonPath = tuple[str | int, ...]
TomlPath = tuple[str | int, ...]

# One pass over the raw text. Group 1: an object key (a string followed by ":");
# group 2: an opening bracket; group 3: a closing bracket; group 4: a comma.
# Other strings are matched (so brackets inside them are skipped) but ignored;
# numbers, literals and whitespace are never matched at all.
_JSON_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")\s*:|"(?:[^"\\]|\\.)*"|([{\[])|([}\]])|(,)')


def _json_string(token: str) -> str:
    if "\\" not in token:
        return token[1:-1]
    return json.loads(token)


def json_container_lines(text: str) -> dict[JsonPath, int]:
    """Index every object/array *value* in a valid JSON document by its path.

    The path of ``{"default": {"django": {...}}}``'s inner object is
    ``("default", "django")``; array elements use their integer index. The line
    is that of the key (``"django": {``) or, for array elements, of the opening
    bracket. Only containers are indexed: that is where lock-file entries live.
    Newlines are counted incrementally, so the whole scan is linear.
    """
    index: dict[JsonPath, int] = {}
    # Each frame: [path, is_array, element_index].
    stack: list[list] = []
    line = 1
    pos = 0
    key: str | None = None  # the last key seen in the current object
    key_start = 0
    for match in _JSON_TOKEN.finditer(text):
        kind = match.lastindex
        if kind == 1:
            key, key_start = match.group(1), match.start()
        elif kind == 2:
            if not stack:
                path: JsonPath = ()
            else:
                frame = stack[-1]
                if frame[1]:
                    path, at = (*frame[0], frame[2]), match.start()
                elif key is not None:
                    path, at = (*frame[0], _json_string(key)), key_start
                else:  # malformed; callers only pass text json.loads accepted
                    path, at = frame[0], match.start()
                line += text.count("\n", pos, at)
                pos = at
                index.setdefault(path, line)
            stack.append([path, match.group(2) == "[", 0])
            key = None
        elif kind == 3:
            if stack:
                stack.pop()
            key = None
        elif kind == 4 and stack and stack[-1][1]:
            stack[-1][2] += 1
    return index


# --- TOML -----------------------------------------------------------------

_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY_PATH = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_KEY_PATH})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_KEY_PATH})\s*=\s*(.*)$")
_KEY_PARTS = re.compile(_KEY_PART)
# Tokens inside a value: strings, brackets and the start of a comment.
_VALUE_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[\[\]{}]|#')


def _toml_string(token: str) -> str:
    if token.startswith("'"):
        return token[1:-1]  # literal string: no escapes
    try:
        # TOML basic-string escapes are nearly JSON's; anything else keeps the raw text.
        return json.loads(token)
    except ValueError:
        return token[1:-1]


def _key_parts(key_path: str) -> list[str]:
    return [_toml_string(p) if p[0] in "\"'" else p for p in _KEY_PARTS.findall(key_path)]


@dataclass
class TomlLines:
    """Line index of a TOML document.

    ``keys`` maps the full path of every table header and ``key = value`` line
    to its line; elements of arrays of tables carry their index, so the ``name``
    of the third ``[[package]]`` is ``("package", 2, "name")``. ``strings`` maps
    the path of an array to ``(value, line)`` for each string literal in it.
    """

    keys: dict[TomlPath, int] = field(default_factory=dict)
    strings: dict[TomlPath, list[tuple[str, int]]] = field(default_factory=dict)

    def string_line(self, path: TomlPath, position: int, value: str) -> int | None:
        """Line of the ``position``-th string of array ``path``, checked against ``value``."""
        items = self.strings.get(path, [])
        if position < len(items) and items[position][0] == value:
            return items[position][1]
        for item_value, item_line in items:
            if item_value == value:
                return item_line
        return None


def toml_lines(text: str) -> TomlLines:
    """Scan TOML text once, line by line, recording key and array-string lines.

    This is a position index, not a parser: it assumes the text already parsed
    with ``tomllib`` and only understands what lock files and pyproject.toml
    use (headers, ``key = value``, multi-line arrays, multi-line strings).
    """
    index = TomlLines()
    array_counts: dict[TomlPath, int] = {}
    table: TomlPath = ()
    array_path: TomlPath | None = None  # set while inside a multi-line array
    depth = 0
    in_multiline: str | None = None  # the closing delimiter of a multi-line string
    for number, raw in enumerate(text.split("\n"), start=1):
        if in_multiline is not None:
            if in_multiline in raw:
                in_multiline = None
            continue
        if array_path is not None:
            depth = _scan_value(raw, array_path, number, depth, index)
            if depth <= 0:
                array_path, depth = None, 0
            continue
        header = _HEADER.match(raw)
        if header:
            is_array = header.group(1) == "[["
            table = _resolve_header(_key_parts(header.group(2)), is_array, array_counts)
            index.keys.setdefault(table, number)
            continue
        assign = _ASSIGN.match(raw)
        if not assign:
            continue
        path = (*table, *_key_parts(assign.group(1)))
        index.keys.setdefault(path, number)
        value = assign.group(2).lstrip()
        for quote in ('"""', "'''"):
            if value.startswith(quote) and value.count(quote) == 1:
                in_multiline = quote
        if value.startswith("["):
            depth = _scan_value(value, path, number, 0, index)
            if depth > 0:
                array_path = path
    return index


def _resolve_header(parts: list[str], is_array: bool, counts: dict[TomlPath, int]) -> TomlPath:
    """Turn ``[a.b]``/``[[a.b]]`` into a path with array-of-tables indexes filled in."""
    resolved: list[str | int] = []
    for position, part in enumerate(parts):
        resolved.append(part)
        key = tuple(resolved)
        if is_array and position == len(parts) - 1:
            counts[key] = counts.get(key, 0) + 1
            resolved.append(counts[key] - 1)
        elif key in counts:
            resolved.append(counts[key] - 1)  # sub-table of the latest [[...]] element
    return tuple(resolved)


def _scan_value(text: str, path: TomlPath, number: int, depth: int, index: TomlLines) -> int:
    """Record string literals of an array value on one line; return the new bracket depth."""
    for match in _VALUE_TOKEN.finditer(text):
        token = match.group()
        if token == "#":  # noqa: S105 (a TOML comment token, not a password)
            break
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth <= 0:
                break
        elif depth == 1:  # only direct elements, not strings inside inline tables
            index.strings.setdefault(path, []).append((_toml_string(token), number))
    return depth
