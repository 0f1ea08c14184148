"""Map keys and values of JSON and TOML documents back to their place in the source.

``json`` and ``tomllib`` do not report positions, so after a document has been
parsed successfully we scan its raw text once and build an index from the
*path* of each key to its 1-based line (for TOML, also of each string value to
its raw offsets). Parsers then look lines up in the index instead of re-searching
the text for every package; the reviews' pin editor uses the TOML offsets to
rewrite one string in place.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass

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


class TomlScanError(Exception):
    """The text uses a layout the position scanner does not follow."""


@dataclass(slots=True)
class TomlString:
    """Where one string value sits in the raw text."""

    start: int  # raw index of the opening quote
    end: int  # raw index just past the closing quote
    value: str  # decoded
    # Raw index of each decoded character, then of the closing quote; None when the value
    # is the raw text right after the opening quote (a one-line string without escapes).
    offsets: list[int] | None = None

    def raw_index(self, position: int) -> int:
        """Raw index of ``value[position]`` (``position == len(value)``: the closing quote)."""
        return self.start + 1 + position if self.offsets is None else self.offsets[position]


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^\s,\]}#]+")
_LINE_END_BACKSLASH = re.compile(r"\\[ \t]*\r?\n")
_PLAIN_STRING = {'"': re.compile(r'"[^"\\\r\n]*"'), "'": re.compile(r"'[^'\r\n]*'")}
_SPACES = re.compile(r"[ \t]*")
_BLANK = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")  # whitespace, newlines and comments


class TomlPositions:
    """Where the keys and string values of a TOML document sit in its text.

    A position index, not a parser: it scans text that ``tomllib`` already accepted, once,
    keeping raw offsets. Paths are keys, plus indexes for array elements and arrays of
    tables (the ``name`` of the third ``[[package]]`` is ``("package", 2, "name")``):

    * ``key_lines``: the 1-based line of every table header and key, keys of inline
      tables and dotted keys included;
    * ``strings``: every string value (``("project", "dependencies", 0)``), decoded, with
      its raw offsets, so a value can be found and rewritten in place (not kept when
      made with ``strings=False``: lock files only need key lines);
    * ``error``: None, or why the scan stopped early (what was found before is kept).

    The inventory's readers take line numbers from it and the reviews' pin editor
    (``apps/reviews/patching/manifest_edit``) the offsets of the string it rewrites.
    """

    def __init__(self, text: str, *, strings: bool = True) -> None:
        self.s = text
        self.i = 0
        self.keep_strings = strings
        self.strings: dict[TomlPath, TomlString] = {}
        self.key_lines: dict[TomlPath, int] = {}
        self.error: str | None = None
        self._tables_in_arrays: dict[TomlPath, int] = {}
        self._names: dict[str, str] = {}  # one copy of each bare key ("name", "hash"...)
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(self, position: int) -> int:
        """The 1-based line of raw index ``position``."""
        return bisect.bisect_left(self._newlines, position) + 1

    def string_line(self, path: TomlPath, value: str) -> int | None:
        """Line where the string at ``path`` starts, when it holds ``value``."""
        found = self.strings.get(path)
        return self.line_of(found.start) if found is not None and found.value == value else None

    def scan(self) -> TomlPositions:
        table: TomlPath = ()
        while True:
            self._skip_blank()
            if self.i >= len(self.s):
                return self
            line = self.line_of(self.i)
            if self.s.startswith("[[", self.i):
                self.i += 2
                keys = self._header_keys("]]")
                array = (*self._resolve(keys[:-1]), keys[-1])
                count = self._tables_in_arrays.get(array, 0)
                self._tables_in_arrays[array] = count + 1
                table = (*array, count)
                self.key_lines[table] = line
            elif self.s[self.i] == "[":
                self.i += 1
                table = self._resolve(self._header_keys("]"))
                self.key_lines.setdefault(table, line)
            else:
                self._key_value(table)
            self._end_of_line()

    def _resolve(self, keys: TomlPath) -> TomlPath:
        """A header's keys with the index of the latest element of each array of tables."""
        path: TomlPath = ()
        for key in keys:
            path = (*path, key)
            if path in self._tables_in_arrays:
                path = (*path, self._tables_in_arrays[path] - 1)
        return path

    def _header_keys(self, close: str) -> TomlPath:
        self._skip_spaces()
        keys = self._key()
        self._skip_spaces()
        self._expect(close)
        return keys

    def _key_value(self, table: TomlPath) -> None:
        line = self.line_of(self.i)
        path = (*table, *self._key())
        self.key_lines[path] = line
        self._skip_spaces()
        self._expect("=")
        self._skip_spaces()
        self._value(path)

    def _key(self) -> TomlPath:
        keys = [self._simple_key()]
        while True:
            save = self.i
            self._skip_spaces()
            if self._peek() != ".":
                self.i = save
                return tuple(keys)
            self.i += 1
            self._skip_spaces()
            keys.append(self._simple_key())

    def _simple_key(self) -> str:
        if self._peek() in ('"', "'"):
            return self._string().value
        match = _BARE_KEY.match(self.s, self.i)
        if not match:
            raise TomlScanError(f"key expected at {self.i}")
        self.i = match.end()
        name = match.group()
        return self._names.setdefault(name, name)

    def _value(self, path: TomlPath) -> None:
        char = self._peek()
        if char in ('"', "'"):
            found = self._string()
            if self.keep_strings:
                self.strings[path] = found
        elif char in ("[", "{"):
            self.i += 1
            close = "]" if char == "[" else "}"
            count = 0
            while True:
                self._skip_blank()
                if self._peek() == close:
                    self.i += 1
                    return
                if char == "[":
                    self._value((*path, count))
                    count += 1
                else:
                    self._key_value(path)
                self._skip_blank()
                if self._peek() == ",":
                    self.i += 1
                elif self._peek() != close:
                    raise TomlScanError(f"{close!r} expected at {self.i}")
        else:
            match = _SCALAR.match(self.s, self.i)
            if not match:
                raise TomlScanError(f"value expected at {self.i}")
            self.i = match.end()
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", match.group()) \
                    and re.match(r" \d{2}:", self.s[self.i:self.i + 4]):
                self.i = _SCALAR.match(self.s, self.i + 1).end()  # date, space, time

    def _string(self) -> TomlString:
        s, start = self.s, self.i
        for quote in ('"""', "'''"):
            if s.startswith(quote, start):
                return self._multiline_string(quote[0])
        quote = s[start]
        plain = _PLAIN_STRING[quote].match(s, start)
        if plain:  # no escapes: the value is the raw text between the quotes
            self.i = plain.end()
            return TomlString(start, self.i, s[start + 1:self.i - 1])
        i = start + 1
        chars: list[str] = []
        offsets: list[int] = []
        while True:
            if i >= len(s) or s[i] in "\r\n":
                raise TomlScanError(f"unterminated string at {start}")
            if s[i] == quote:
                break
            offsets.append(i)
            if s[i] == "\\" and quote == '"':
                char, i = self._escape(i)
            else:
                char, i = s[i], i + 1
            chars.append(char)
        offsets.append(i)
        self.i = i + 1
        return TomlString(start, i + 1, "".join(chars), offsets)

    def _multiline_string(self, quote: str) -> TomlString:
        s, start = self.s, self.i
        i = start + 3
        if s.startswith("\r\n", i):
            i += 2
        elif s.startswith("\n", i):
            i += 1
        chars: list[str] = []
        offsets: list[int] = []
        while True:
            if i >= len(s):
                raise TomlScanError(f"unterminated string at {start}")
            if s.startswith(quote * 3, i):
                run = 3
                while run < 5 and s.startswith(quote, i + run):
                    run += 1
                for extra in range(run - 3):  # up to two quotes end the content
                    offsets.append(i + extra)
                    chars.append(quote)
                offsets.append(i + run - 3)
                self.i = i + run
                return TomlString(start, self.i, "".join(chars), offsets)
            if quote == '"' and s[i] == "\\":
                trim = _LINE_END_BACKSLASH.match(s, i)
                if trim:
                    i = trim.end()
                    while i < len(s) and s[i] in " \t\r\n":
                        i += 1
                    continue
                offsets.append(i)
                char, i = self._escape(i)
            elif s.startswith("\r\n", i):  # tomllib reads a CRLF inside a string as "\n"
                offsets.append(i)
                char, i = "\n", i + 2
            else:
                offsets.append(i)
                char, i = s[i], i + 1
            chars.append(char)

    def _escape(self, i: int) -> tuple[str, int]:
        code = self.s[i + 1:i + 2]
        if code in _ESCAPES:
            return _ESCAPES[code], i + 2
        width = {"u": 4, "U": 8}.get(code)
        digits = self.s[i + 2:i + 2 + width] if width else ""
        if not width or not re.fullmatch(r"[0-9A-Fa-f]+", digits) or len(digits) != width:
            raise TomlScanError(f"bad escape at {i}")
        return chr(int(digits, 16)), i + 2 + width

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _expect(self, token: str) -> None:
        if not self.s.startswith(token, self.i):
            raise TomlScanError(f"{token!r} expected at {self.i}")
        self.i += len(token)

    def _skip_spaces(self) -> None:
        self.i = _SPACES.match(self.s, self.i).end()

    def _skip_blank(self) -> None:
        self.i = _BLANK.match(self.s, self.i).end()

    def _end_of_line(self) -> None:
        self._skip_spaces()
        if self._peek() == "#":
            end = self.s.find("\n", self.i)
            self.i = len(self.s) if end == -1 else end
        if self.s.startswith("\r\n", self.i):
            self.i += 2
        elif self.s.startswith("\n", self.i) or self.i >= len(self.s):
            self.i += 1
        else:
            raise TomlScanError(f"end of line expected at {self.i}")


def toml_positions(text: str, *, strings: bool = True) -> TomlPositions:
    """Scan TOML text (already accepted by ``tomllib``) once; never raises.

    On a layout the scanner does not follow, ``error`` says where it stopped and the
    positions found up to there are kept (readers then lack some line numbers; the pin
    editor refuses to edit).
    """
    positions = TomlPositions(text, strings=strings)
    try:
        positions.scan()
    except TomlScanError as exc:
        positions.error = str(exc)
    except RecursionError:  # nested deeper than the scanner's recursion allows
        positions.error = "nested too deep"
    return positions
