"""Per-project include/exclude patterns for manifest paths (docs/apv.md, "Manifests").

A pattern is matched against a manifest's posix path relative to the repository root,
segment by segment: ``*``, ``?`` and ``[...]`` match within one path segment (as
:func:`fnmatch.fnmatchcase`, case-sensitive like git), ``**`` as a whole segment matches
zero or more segments. A pattern also matches everything below a directory it matches, so
``tests``, ``tests/`` and ``tests/**`` all exclude the whole ``tests`` folder. A leading
``/`` anchors nothing more (patterns are always relative to the root). Python 3.11 has no
``PurePath.full_match`` and no pinned glob library, hence this small matcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from functools import lru_cache

#: Bounds on what a project may configure (validated by :func:`clean_patterns`).
MAX_PATTERNS = 100
MAX_PATTERN_CHARS = 300


class InvalidPattern(ValueError):
    """A pattern list that cannot be stored (not a list of strings, ``..``, too long)."""


def _segments(pattern: str) -> tuple[str, ...]:
    parts = [p for p in pattern.strip().strip("/").split("/") if p not in ("", ".")]
    # Consecutive ``**`` mean the same as one; collapsing them keeps matching linear.
    collapsed: list[str] = []
    for part in parts:
        if part == "**" and collapsed and collapsed[-1] == "**":
            continue
        collapsed.append(part)
    return tuple(collapsed)


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> tuple[str, ...]:
    return _segments(pattern)


def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """True when ``pattern`` matches ``path`` or one of its parent directories."""
    # Dynamic programming over (pattern position, path position): no exponential backtracking
    # on patterns such as ``**/a/**/b/**``.
    reachable = {0}
    for segment in path:
        following: set[int] = set()
        for position in _closure(pattern, reachable):
            if position == len(pattern):
                return True  # the pattern matched a parent directory
            part = pattern[position]
            if part == "**":
                following.add(position)  # ** swallows this segment and may go on
            elif fnmatchcase(segment, part):
                following.add(position + 1)
        if not following:
            return False
        reachable = following
    return len(pattern) in _closure(pattern, reachable)


def _closure(pattern: tuple[str, ...], positions: set[int]) -> set[int]:
    """Positions reachable by letting ``**`` match zero segments."""
    result = set(positions)
    for position in sorted(positions):
        while position < len(pattern) and pattern[position] == "**":
            position += 1
            result.add(position)
    return result


def path_matches(path: str, patterns: Iterable[str]) -> bool:
    """True when the posix ``path`` (relative to the root) matches any of ``patterns``."""
    parts = tuple(p for p in path.split("/") if p)
    return any(_match(_compiled(pattern), parts) for pattern in patterns if pattern.strip())


def selected(path: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """Whether a manifest at ``path`` is read: it matches an include pattern (or there are
    none) and no exclude pattern; exclude wins over include."""
    if include and not path_matches(path, include):
        return False
    return not path_matches(path, exclude)


def clean_patterns(value: object, *, field: str = "patterns") -> list[str]:
    """Validate and normalise a list of patterns for storage on a project.

    Blank entries are dropped and whitespace around a pattern trimmed; refused with
    InvalidPattern: anything but a list of strings, a ``..`` segment (paths never leave
    the repository), NUL or control characters, more than MAX_PATTERNS patterns or a
    pattern over MAX_PATTERN_CHARS characters.
    """
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidPattern(f"{field} must be a list of glob patterns")
    cleaned: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise InvalidPattern(f"{field}: {item!r} is not a string")
        pattern = item.strip()
        if not pattern:
            continue
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidPattern(f"{field}: a pattern is longer than {MAX_PATTERN_CHARS} "
                                 f"characters")
        if any(not c.isprintable() for c in pattern):
            raise InvalidPattern(f"{field}: {pattern!r} contains control characters")
        if ".." in pattern.replace("\\", "/").split("/"):
            raise InvalidPattern(f"{field}: {pattern!r} has a '..' segment; patterns are "
                                 f"relative to the repository root")
        if pattern not in cleaned:
            cleaned.append(pattern)
    if len(cleaned) > MAX_PATTERNS:
        raise InvalidPattern(f"{field}: more than {MAX_PATTERNS} patterns")
    return cleaned
