"""What an exploit printed, made storable.

An exploit is untrusted: its evidence line and output may hold anything Python's ``json``
accepts and the database does not. PostgreSQL rejects NUL (``\\x00``) in ``text`` and
``jsonb`` and refuses JSON numbers ``NaN``/``Infinity`` (RFC 8259 §6 has none; Python's
``json.loads`` accepts them); lone surrogates cannot be encoded as UTF-8 at all. A run must
end whatever the exploit printed (issue 11), so everything an exploit wrote goes through
here before it is stored: text is cleaned, and evidence that cannot be stored as the
exploit meant it is cleaned *and* reported, so the run ends ``error`` with the reason
instead of carrying a verdict built on evidence nobody can show.
"""

from __future__ import annotations

import json
import math

#: Serialized evidence above this many bytes is not kept (the run ends ``error``).
EVIDENCE_LIMIT_BYTES = 64 * 1024
#: Nesting deeper than this is cut (PostgreSQL's jsonb parser recurses per level).
EVIDENCE_MAX_DEPTH = 64
TRUNCATED = "\n… (truncated)"


def clean_text(value, limit: int | None) -> str:
    """``value`` as storable text: NULs removed, lone surrogates replaced, at most
    ``limit`` characters (the tail marked when cut; ``None``: no cap)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    if limit is not None and len(text) > limit:
        cut = max(0, limit - len(TRUNCATED))
        text = text[:cut] + TRUNCATED[: limit - cut]
    return text


def _non_finite(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


class _Cleaner:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def clean(self, value, path: str, depth: int):
        if depth > EVIDENCE_MAX_DEPTH:
            self._note(f"evidence nested deeper than {EVIDENCE_MAX_DEPTH} levels (at {path})")
            return None
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            name = _non_finite(value)
            self._note(f"evidence holds {name} at {path}, which JSON does not allow")
            return name
        if isinstance(value, str):
            return clean_text(value, None)
        if isinstance(value, dict):
            cleaned = {}
            for key, item in value.items():
                name = clean_text(key, None)
                cleaned[name] = self.clean(item, f"{path}.{name}", depth + 1)
            return cleaned
        if isinstance(value, list | tuple):
            return [self.clean(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        self._note(f"evidence holds a {type(value).__name__} at {path}, which is not JSON")
        return clean_text(repr(value), 200)


def sanitise_evidence(obj) -> tuple[dict, str]:
    """(evidence safe to store, the problem in a sentence or ``""``).

    NUL is stripped from keys and strings without complaint (text keeps its meaning);
    ``NaN``/``±Infinity`` become the strings ``"NaN"``/``"Infinity"``/``"-Infinity"`` and a
    problem naming them; evidence larger than ``EVIDENCE_LIMIT_BYTES`` serialized is
    replaced by a stub (its size, and ``exploited`` when that was a boolean) with the
    problem "evidence too large". Anything that is not a JSON object is a problem too.
    """
    cleaner = _Cleaner()
    if obj is None:
        return {}, ""
    if not isinstance(obj, dict):
        cleaned = {"value": cleaner.clean(obj, "$", 1)}
        return cleaned, "; ".join(["evidence is not a JSON object", *cleaner.problems])
    cleaned = cleaner.clean(obj, "$", 0)
    size = len(json.dumps(cleaned, ensure_ascii=False).encode("utf-8"))
    if size > EVIDENCE_LIMIT_BYTES:
        stub: dict = {"evidence_too_large_bytes": size}
        if isinstance(cleaned.get("exploited"), bool):
            stub["exploited"] = cleaned["exploited"]
        return stub, (f"evidence too large ({size} bytes serialized, the limit is "
                      f"{EVIDENCE_LIMIT_BYTES})")
    return cleaned, "; ".join(cleaner.problems)
