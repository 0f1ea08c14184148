"""Rewrite one dependency pin in a manifest, keeping everything else byte-for-byte.

A ``dependency_upgrade`` patch changes the version a manifest pins for a vulnerable
package to a fixed one. :func:`upgrade_pin` is the pure part of that: it takes the
manifest's text and returns the new text, or raises :class:`ManualPatchRequired` with
a reason a person can act on when the file cannot be edited safely.

* pip requirements files (``*.txt``): the requirement's logical line is found with
  pip's own joining, comment and option-splitting rules, read as the inventory reads
  them (``apps.inventory.manifests.pip_format``, which also maps every character back
  to its physical line and column), checked with ``packaging.requirements``, and only
  the version token of its ``==``/``===`` clause is replaced. ``--hash`` options of
  that requirement are removed (they cannot match the new version) and a note says to
  regenerate them.
* ``pyproject.toml``: PEP 621 / PEP 735 dependency strings and Poetry's dependency
  tables, found where the inventory finds them (``apps.inventory.manifests.pyproject``).
  The inventory's position-tracking TOML scanner (``apps.inventory.manifests.lines``)
  finds the string to edit; the result is re-parsed with ``tomllib`` and must equal
  the old document with just that value changed.
* Lock files and SBOMs are never edited: their hashes and resolved trees must come
  from the tool that owns them. Everything else is not supported.

Line numbers (the ``line`` hint, ``changed_lines``, line numbers in notes and
reasons) are 1-based and refer to the ``text`` passed in. Newline style (``\\n`` or
``\\r\\n``, per line), a missing final newline and a UTF-8 BOM are kept.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from apps.inventory.manifests.lines import TomlPositions, TomlString, toml_positions
from apps.inventory.manifests.pip_format import (
    LogicalLine,
    join_lines,
    parse_options,
    pinned_version,
    split_lines,
)
from apps.inventory.manifests.pyproject import (
    pep508_lists,
    poetry_dependency_tables,
    poetry_exact_span,
)


@dataclass(frozen=True)
class ManifestEdit:
    text: str  # the whole new file content
    notes: list[str]  # human-readable notes for the reviewer
    changed_lines: list[int]  # 1-based lines of the input text that were changed or removed


class ManualPatchRequired(Exception):
    """The manifest cannot be rewritten safely; ``reason`` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# A version we are willing to write into a file: PEP 440 characters only, so that a
# strange "fixed version" from advisory data can never inject syntax or a new line.
_PLAIN_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")

# The single ``==``/``===`` clause of a PEP 508 requirement that packaging has already
# accepted: name, optional extras, optional legacy "(", operator, version token.
_PIN_CLAUSE = re.compile(
    r"\s*[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:\[[^\]]*\])?\s*\(?\s*"
    r"(?P<op>===|==)\s*(?P<version>[^\s,;)]+)"
)

_SBOM_NAMES = frozenset({"bom.json", "sbom.json"})
_SBOM_SUFFIXES = (".cdx.json",)


def upgrade_pin(*, text: str, manifest_path: str, package: str, old_version: str,
                new_version: str, line: int | None) -> ManifestEdit:
    """Change the pin of ``package`` from ``old_version`` to ``new_version``.

    ``package`` is matched by PEP 503 name. ``line`` (1-based) is where the dependency
    was declared: that declaration is edited when it pins ``old_version``; otherwise
    the file is searched (the nearest pin to the hint is edited, or every pin when
    there is no hint). When the file already pins ``new_version`` instead, the text is
    returned unchanged with a note (so calling this once per finding is safe).
    """
    if not _PLAIN_VERSION.fullmatch(new_version):
        raise ManualPatchRequired(
            f"{new_version!r} is not a plain version number; refusing to write it into "
            f"{manifest_path}")
    name = manifest_path.replace("\\", "/").rsplit("/", 1)[-1]
    lower = name.lower()
    locked = _lock_or_sbom_reason(lower, manifest_path, package, old_version, new_version)
    if locked:
        raise ManualPatchRequired(locked)
    if lower == "pyproject.toml":
        editor = _upgrade_pyproject
    elif lower.endswith(".txt"):
        editor = _upgrade_requirements
    else:
        raise ManualPatchRequired(
            f"{manifest_path}: {_file_type(name)} cannot be edited automatically; upgrade "
            f"{package} from {old_version} to {new_version} by hand")
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    job = _Job(manifest_path, package, canonicalize_name(package), old_version, new_version,
               line)
    edit = editor(text[len(bom):], job)
    return ManifestEdit(text=bom + edit.text, notes=edit.notes,
                        changed_lines=edit.changed_lines)


# --- files that are never edited -------------------------------------------------


def _lock_or_sbom_reason(lower: str, path: str, pkg: str, old: str, new: str) -> str | None:
    if lower == "poetry.lock":
        return (f"{path} pins {pkg} {old} with hashes and a content hash; run "
                f"`poetry update {pkg}` (or `poetry add {pkg}@^{new}`) to upgrade it safely")
    if lower == "pipfile.lock":
        return (f"{path} pins {pkg} {old} with hashes and a hash of the Pipfile; run "
                f"`pipenv update {pkg}` (after allowing {new} in the Pipfile) to upgrade it "
                "safely")
    if lower == "uv.lock":
        return (f"{path} pins {pkg} {old} with hashes; run `uv lock --upgrade-package {pkg}` "
                f"(or `uv lock --upgrade-package {pkg}=={new}`) to upgrade it safely")
    if lower in ("package-lock.json", "npm-shrinkwrap.json"):
        return (f"{path} pins {pkg} {old} with an integrity hash inside a resolved tree; run "
                f"`npm install {pkg}@{new}` (for a transitive dependency: `npm update {pkg}`, "
                "or an `overrides` entry in package.json) to upgrade it safely")
    if lower in _SBOM_NAMES or lower.endswith(_SBOM_SUFFIXES):
        return (f"{path} is an SBOM: an SBOM describes, it does not declare; upgrade {pkg} "
                f"to {new} in the manifest it was generated from, then regenerate the SBOM")
    return None


def _file_type(name: str) -> str:
    known = {
        "setup.py": "setup.py (Python code)",
        "setup.cfg": "setup.cfg",
        "pipfile": "a Pipfile",
        "package.json": "package.json",
    }
    if name.lower() in known:
        return known[name.lower()]
    suffix = name.rsplit(".", 1)[-1] if "." in name.lstrip(".") else ""
    return f"a .{suffix} file" if suffix else f"a file named {name}"


# --- choosing the declaration to edit ---------------------------------------------


@dataclass(frozen=True)
class _Job:
    path: str
    package: str
    canonical: str
    old: str
    new: str
    hint: int | None


@dataclass
class _Decl:
    """One declaration of the package in the file."""

    first_line: int
    lines: frozenset[int]  # every line the declaration covers, for the hint
    written: str  # as written, for messages
    pinned: str | None  # the exact version pinned, None when not an exact pin
    loose_reason: str  # why it is not an exact pin
    data: Any  # format-specific: where to edit


def _same_version(a: str, b: str) -> bool:
    if a.lower() == b.lower():
        return True
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def _choose(decls: list[_Decl], job: _Job) -> tuple[list[_Decl], list[str]]:
    """The declarations to edit, plus notes; ManualPatchRequired when there are none."""
    pins = [d for d in decls if d.pinned is not None and _same_version(d.pinned, job.old)]
    at_hint = [d for d in pins if job.hint is not None and job.hint in d.lines]
    if at_hint:
        return at_hint[:1], []
    if pins and job.hint is not None:
        nearest = min(pins, key=lambda d: abs(d.first_line - job.hint))
        return [nearest], [
            f"{job.path}:{job.hint}: no {job.package} {job.old} pin on that line; upgraded "
            f"the pin on line {nearest.first_line} instead"]
    if pins:
        notes = []
        if len(pins) > 1:
            notes.append(f"{job.path}: {job.package} {job.old} is pinned on lines "
                         f"{', '.join(str(d.first_line) for d in pins)}; upgraded all of them")
        return pins, notes
    done = [d for d in decls if d.pinned is not None and _same_version(d.pinned, job.new)]
    if done:
        return [], [f"{job.path}:{done[0].first_line} already pins {job.package} {job.new}; "
                    "left unchanged"]
    if not decls:
        raise ManualPatchRequired(
            f"{job.package} {job.old} is not declared in {job.path}: no requirement for "
            f"{job.package} was found there (it may come in transitively or from another "
            "manifest)")
    reasons = []
    for d in decls:
        if d.pinned is None:
            reasons.append(
                f"{job.path}:{d.first_line}: `{d.written}` is {d.loose_reason}, so there is "
                f"no version to replace; change it to exclude {job.old} (e.g. >={job.new}) "
                "by hand")
        else:
            reasons.append(f"{job.path}:{d.first_line} pins {job.package} {d.pinned}, not "
                           f"{job.old}; nothing to upgrade there")
    raise ManualPatchRequired("; ".join(reasons))


def _classify(req: Requirement) -> tuple[str | None, str, str]:
    """``(pinned version, operator, why not a pin)`` of a PEP 508 requirement: a pin is
    what the inventory records as one (:func:`pinned_version`)."""
    if req.url:
        return None, "", "a direct reference to a URL"
    pinned = pinned_version(req.specifier)
    if pinned is None:
        return None, "", "not an exact pin (a single == or ===)"
    return pinned, next(iter(req.specifier)).operator, ""


def _pin_span(req_text: str, pinned: str, where: str) -> tuple[int, int]:
    """Start and end of the version token of a requirement's single ``==``/``===`` clause."""
    match = _PIN_CLAUSE.match(req_text)
    if not match or match["version"] != pinned:
        raise ManualPatchRequired(f"{where}: cannot locate the version in `{req_text}`; "
                                  "edit it by hand")
    return match.start("version"), match.end("version")


def _pins_as_intended(text: str, old: Requirement, op: str, new_version: str) -> bool:
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return False
    specs = list(req.specifier)
    return (canonicalize_name(req.name) == canonicalize_name(old.name)
            and req.extras == old.extras and str(req.marker) == str(old.marker)
            and req.url == old.url and len(specs) == 1 and specs[0].operator == op
            and specs[0].version == new_version)


# --- pip requirements files -------------------------------------------------------

def _requirement(logical: LogicalLine) -> Requirement | None:
    """The PEP 508 requirement of a logical line; None for a URL, a path, an option line
    or a line the inventory reports as an error instead of a dependency (a broken
    requirement, options pip rejects such as a ``--hash`` without a value)."""
    part = logical.requirement
    if not part.text:
        return None
    try:
        parse_options(part.option_text)
        return Requirement(part.text)
    except (InvalidRequirement, ValueError):
        return None


def _hash_tokens(options: list[tuple[int, int, str]]) -> tuple[list[int], int]:
    """Indexes of the tokens making up ``--hash`` options, and how many options that is."""
    tokens: list[int] = []
    count = 0
    position = 0
    while position < len(options):
        text = options[position][2]
        if text.startswith("--hash="):
            tokens.append(position)
            count += 1
        elif text == "--hash":
            tokens.append(position)
            if position + 1 < len(options):
                tokens.append(position + 1)
                position += 1
            count += 1
        position += 1
    return tokens, count


def _physical_span(logical: LogicalLine, start: int, end: int, where: str) -> tuple[int, int, int]:
    """``(line index, start column, end column)`` of a joined span on one physical line."""
    span = logical.physical_span(start, end)
    if span is None:
        raise ManualPatchRequired(f"{where}: a token spans several lines; edit it by hand")
    return span


def _upgrade_requirements(text: str, job: _Job) -> ManifestEdit:
    lines = list(split_lines(text))
    logicals = list(join_lines(lines))
    decls = []
    for logical in logicals:
        req = _requirement(logical)
        if req is None or canonicalize_name(req.name) != job.canonical:
            continue
        pinned, op, loose = _classify(req)
        decls.append(_Decl(logical.number, frozenset(i + 1 for i in logical.indexes),
                           logical.requirement.text, pinned, loose, (logical, op)))
    chosen, notes = _choose(decls, job)

    new_content: dict[int, str] = {}
    dropped: set[int] = set()
    changed: set[int] = set()
    edited: dict[int, tuple[LogicalLine, str]] = {}  # first physical index -> (old, operator)
    for decl in chosen:
        logical, op = decl.data
        where = f"{job.path}:{decl.first_line}"
        req_start, req_text, _, options = logical.requirement
        start, end = _pin_span(req_text, decl.pinned, where)
        edits: dict[int, list[tuple[int, int, str]]] = {}
        index, col_start, col_end = _physical_span(
            logical, req_start + start, req_start + end, where)
        edits.setdefault(index, []).append((col_start, col_end, job.new))
        hash_positions, hash_count = _hash_tokens(options)
        deletions: dict[int, list[tuple[int, int]]] = {}
        for position in hash_positions:
            token_start, token_end, _ = options[position]
            index, col_start, col_end = _physical_span(logical, token_start, token_end, where)
            deletions.setdefault(index, []).append((col_start, col_end))
        for index, spans in deletions.items():
            edits.setdefault(index, []).extend(
                (s, e, "") for s, e in _widen(lines[index][0], spans))
        for index, line_edits in edits.items():
            content = lines[index][0]
            for s, e, replacement in sorted(line_edits, reverse=True):
                content = content[:s] + replacement + content[e:]
            changed.add(index + 1)
            if index in deletions and index != logical.indexes[0] \
                    and not content.rstrip("\\").strip():
                dropped.add(index)
            else:
                new_content[index] = content
        if logical.indexes[-1] in dropped:
            # The continuation now ends earlier: its new last line must not continue.
            last = max(i for i in logical.indexes if i not in dropped)
            content = new_content.get(last, lines[last][0])
            if content.endswith("\\"):
                new_content[last] = content.rstrip("\\").rstrip()
                changed.add(last + 1)
        if hash_count:
            notes.append(
                f"{where}: removed {hash_count} --hash option{'s' if hash_count > 1 else ''} "
                f"for {job.package} (they pinned {job.old}); regenerate hashes, e.g. "
                "pip-compile --generate-hashes")
        edited[logical.indexes[0]] = (logical, op)

    if any(_hash_tokens(decl.data[0].requirement.options)[1] for decl in chosen):
        others = [lg for lg in logicals if lg.indexes[0] not in edited
                  and _hash_tokens(lg.requirement.options)[1]]
        if others:
            notes.append(
                f"{job.path}: other requirements still carry --hash options, so pip runs in "
                f"hash-checking mode and will reject {job.package}=={job.new} until its "
                "hashes are added")

    new_lines = [(new_content.get(i, content), ending)
                 for i, (content, ending) in enumerate(lines) if i not in dropped]
    if lines and not lines[-1][1].endswith("\n") and new_lines \
            and new_lines[-1][1].endswith("\n"):
        new_lines[-1] = (new_lines[-1][0], lines[-1][1])  # the file did not end with a newline
    new_text = "".join(content + ending for content, ending in new_lines)
    _verify_requirements(logicals, list(join_lines(new_lines)), edited, job)
    return ManifestEdit(new_text, notes, sorted(changed))


def _widen(content: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans to delete, each with the blanks that separated it from its neighbours."""
    widened = []
    for start, end in spans:
        if content[:start].strip():
            while start > 0 and content[start - 1] in " \t":
                start -= 1
        else:
            while end < len(content) and content[end] in " \t":
                end += 1
        widened.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(widened):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _verify_requirements(old: list[LogicalLine], new: list[LogicalLine],
                         edited: dict[int, tuple[LogicalLine, str]], job: _Job) -> None:
    """Re-read the result the way pip would: only the edited requirements changed."""
    def fail(detail: str) -> ManualPatchRequired:
        return ManualPatchRequired(f"{job.path}: {detail}; upgrade {job.package} by hand")

    if len(old) != len(new):
        raise fail("rewriting the requirement changed the file's structure")
    for before, after in zip(old, new, strict=True):
        if before.indexes[0] not in edited:
            if before.joined != after.joined:
                raise fail("rewriting the requirement changed another line")
            continue
        _, op = edited[before.indexes[0]]
        line = before.number
        old_req, after_text = _requirement(before), after.requirement.text
        if old_req is None or not _pins_as_intended(after_text, old_req, op, job.new):
            raise fail(f"line {line} would read `{after_text}`, which does not pin "
                       f"{job.package} {job.new}")
        hashes = set(_hash_tokens(before.requirement.options)[0])
        kept = [t for i, t in enumerate(before.requirement.options) if i not in hashes]
        if [t[2] for t in after.requirement.options] != [t[2] for t in kept]:
            raise fail(f"line {line} would lose or keep the wrong options")


# --- pyproject.toml -------------------------------------------------------------------


def _toml_get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@dataclass
class _TomlTarget:
    path: tuple  # path of the string value to edit
    leaf: TomlString
    span: tuple[int, int]  # the version inside the decoded value
    kind: str  # "pep508" or "poetry"
    req: Requirement | None = None
    op: str = ""


def _upgrade_pyproject(text: str, job: _Job) -> ManifestEdit:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManualPatchRequired(f"{job.path} is not valid TOML ({exc}); upgrade "
                                  f"{job.package} by hand") from exc
    locator = toml_positions(text)
    if locator.error:
        raise ManualPatchRequired(f"{job.path}: cannot locate values in this TOML layout "
                                  f"({locator.error}); upgrade {job.package} by hand")
    decls = _pep508_decls(doc, locator, job) + _poetry_decls(doc, locator, job)
    chosen, notes = _choose(decls, job)
    if not chosen:
        return ManifestEdit(text, notes, [])

    replacements: list[tuple[int, int]] = []
    expected = copy.deepcopy(doc)  # the old document with just the edited values changed
    targets: dict[tuple, tuple[_Decl, str]] = {}
    for decl in chosen:
        target: _TomlTarget = decl.data
        leaf = target.leaf
        start, end = target.span
        raw_start, raw_end = leaf.raw_index(start), leaf.raw_index(end)
        if text[raw_start:raw_end] != leaf.value[start:end]:
            raise ManualPatchRequired(f"{job.path}:{decl.first_line}: the version is written "
                                      f"with escapes; upgrade {job.package} by hand")
        replacements.append((raw_start, raw_end))
        new_value = leaf.value[:start] + job.new + leaf.value[end:]
        _toml_get(expected, target.path[:-1])[target.path[-1]] = new_value
        targets[target.path] = (decl, new_value)

    new_text = text
    for raw_start, raw_end in sorted(replacements, reverse=True):
        new_text = new_text[:raw_start] + job.new + new_text[raw_end:]
    _verify_pyproject(new_text, expected, targets, job)

    for decl in chosen:
        if decl.data.kind == "poetry":
            notes.append(f"{job.path}: run `poetry lock` so poetry.lock (if the project has "
                         f"one) records {job.package} {job.new}")
            break
    else:
        notes.append(f"{job.path}: regenerate the project's lock file (uv.lock, pdm.lock...) "
                     f"if it has one, so it records {job.package} {job.new}")
    changed = sorted({locator.line_of(raw_start) for raw_start, _ in replacements})
    return ManifestEdit(new_text, notes, changed)


def _verify_pyproject(new_text: str, expected: dict,
                      targets: dict[tuple, tuple[_Decl, str]], job: _Job) -> None:
    try:
        new_doc = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise ManualPatchRequired(f"{job.path}: the edit would break the TOML ({exc}); "
                                  f"upgrade {job.package} by hand") from exc
    if new_doc != expected:
        raise ManualPatchRequired(f"{job.path}: the edit would change more than the pin of "
                                  f"{job.package}; upgrade it by hand")
    for path, (decl, new_value) in targets.items():
        target: _TomlTarget = decl.data
        if target.kind == "pep508":
            ok = _pins_as_intended(new_value, target.req, target.op, job.new)
        else:
            span = poetry_exact_span(new_value)
            ok = span is not None and new_value[span[0]:span[1]] == job.new
        if not ok or _toml_get(new_doc, path) != new_value:
            raise ManualPatchRequired(f"{job.path}:{decl.first_line}: the edited value "
                                      f"{new_value!r} does not pin {job.package} {job.new}; "
                                      "upgrade it by hand")


def _leaf(locator: TomlPositions, doc: dict, path: tuple, job: _Job) -> TomlString:
    leaf = locator.strings.get(path)
    if leaf is None or leaf.value != _toml_get(doc, path):
        raise ManualPatchRequired(f"{job.path}: cannot locate {'.'.join(map(str, path))} in "
                                  f"the text; upgrade {job.package} by hand")
    return leaf


def _leaf_lines(locator: TomlPositions, leaf: TomlString) -> set[int]:
    return set(range(locator.line_of(leaf.start), locator.line_of(leaf.end - 1) + 1))


def _pep508_decls(doc: dict, locator: TomlPositions, job: _Job) -> list[_Decl]:
    """PEP 621 ``project.(optional-)dependencies`` and PEP 735 ``dependency-groups``."""
    decls = []
    for prefix, items in pep508_lists(doc):
        for position, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, str):
                continue
            try:
                req = Requirement(item)
            except InvalidRequirement:
                continue
            if canonicalize_name(req.name) != job.canonical:
                continue
            path = (*prefix, position)
            leaf = _leaf(locator, doc, path, job)
            pinned, op, loose = _classify(req)
            line = locator.line_of(leaf.start)
            span = (0, 0)
            if pinned is not None and _same_version(pinned, job.old):
                span = _pin_span(item, pinned, f"{job.path}:{line}")
            decls.append(_Decl(line, frozenset(_leaf_lines(locator, leaf)), item, pinned,
                               loose, _TomlTarget(path, leaf, span, "pep508", req, op)))
    return decls


def _poetry_decls(doc: dict, locator: TomlPositions, job: _Job) -> list[_Decl]:
    """Poetry's main, legacy dev and group dependency tables."""
    decls = []
    for prefix, table in poetry_dependency_tables(doc):
        for name, value in table.items():
            if name.lower() == "python" or canonicalize_name(name) != job.canonical:
                continue
            key_line = locator.key_lines.get((*prefix, name))
            entries = [((*prefix, name), value)] if not isinstance(value, list) else [
                ((*prefix, name, position), entry) for position, entry in enumerate(value)]
            for entry_path, entry in entries:
                decls.append(_poetry_decl(doc, locator, job, name, key_line, entry_path, entry))
    return decls


def _poetry_decl(doc: dict, locator: TomlPositions, job: _Job, name: str, key_line: int | None,
                 entry_path: tuple, entry: Any) -> _Decl:
    if isinstance(entry, dict) and isinstance(entry.get("version"), str):
        path, constraint = (*entry_path, "version"), entry["version"]
    elif isinstance(entry, str):
        path, constraint = entry_path, entry
    else:
        where = locator.key_lines.get(entry_path) or key_line or 0
        sources = [k for k in ("git", "path", "url", "file") if isinstance(entry, dict)
                   and k in entry]
        loose = f"a {'/'.join(sources)} dependency" if sources else "not a version constraint"
        return _Decl(where, frozenset({where}), f"{name} = {entry!r}", None, loose, None)
    leaf = _leaf(locator, doc, path, job)
    line = locator.line_of(leaf.start)
    lines = _leaf_lines(locator, leaf) | ({key_line} if key_line else set())
    span = poetry_exact_span(constraint)
    pinned = constraint[span[0]:span[1]] if span else None
    written = f'{name} = "{constraint}"'
    return _Decl(key_line or line, frozenset(lines), written, pinned,
                 "not an exact Poetry pin", _TomlTarget(path, leaf, span or (0, 0), "poetry"))
