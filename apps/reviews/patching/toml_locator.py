"""A position-tracking scanner for TOML documents tomllib already accepted.

It tells where each string value sits in the raw text, so a pin can be changed in place
without reformatting the file (split out of manifest_edit).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass


class TomlScanError(Exception):
    pass


@dataclass
class TomlString:
    start: int  # raw index of the opening quote
    end: int  # raw index just past the closing quote
    value: str  # decoded
    offsets: list[int]  # raw index of each decoded char, then the index of the closing quote


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^\s,\]}#]+")
_LINE_END_BACKSLASH = re.compile(r"\\[ \t]*\r?\n")


class TomlLocator:
    """Where each string value of a TOML document (already accepted by tomllib) sits.

    ``strings`` maps a value's path (keys, and indexes for arrays and arrays of
    tables) to its position; ``key_lines`` maps key and table paths to their line.
    """

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.strings: dict[tuple, TomlString] = {}
        self.key_lines: dict[tuple, int] = {}
        self._tables_in_arrays: dict[tuple, int] = {}
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(self, position: int) -> int:
        return bisect.bisect_left(self._newlines, position) + 1

    def scan(self) -> TomlLocator:
        table: tuple = ()
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

    def _resolve(self, keys: tuple) -> tuple:
        path: tuple = ()
        for key in keys:
            path = (*path, key)
            if path in self._tables_in_arrays:
                path = (*path, self._tables_in_arrays[path] - 1)
        return path

    def _header_keys(self, close: str) -> tuple:
        self._skip_spaces()
        keys = self._key()
        self._skip_spaces()
        self._expect(close)
        return keys

    def _key_value(self, table: tuple) -> None:
        line = self.line_of(self.i)
        path = (*table, *self._key())
        self.key_lines[path] = line
        self._skip_spaces()
        self._expect("=")
        self._skip_spaces()
        self._value(path)

    def _key(self) -> tuple:
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
        return match.group()

    def _value(self, path: tuple) -> None:
        char = self._peek()
        if char in ('"', "'"):
            self.strings[path] = self._string()
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
        while self._peek() in (" ", "\t"):
            self.i += 1

    def _skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        while self.i < len(self.s):
            char = self.s[self.i]
            if char in " \t\r\n":
                self.i += 1
            elif char == "#":
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end == -1 else end
            else:
                return

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
