"""Parse pip requirements files, following ``-r`` includes and ``-c`` constraints.

Format: https://pip.pypa.io/en/stable/reference/requirements-file-format/

Choices made here:

* Every requirement in a requirements file is recorded with ``direct=True``:
  the author asked for it by name.
* Included files (``-r``/``--requirement``) are resolved relative to the
  including file, as pip does; their dependencies keep their own manifest path
  and line. A file is read at most once per parse, include cycles are reported
  as errors on the including line, and includes that leave the project root or
  point at a URL are reported rather than followed (we never read outside the
  working copy nor fetch anything).
* Constraint files (``-c``/``--constraint``) only restrict versions of packages
  that are required elsewhere; pip never installs a package because of one. So
  a constraint is recorded as a dependency (with the constraint file's path and
  line, ``direct=True`` because the package is a direct requirement that the
  constraint pins) only when it is an exact pin *and* the same package (PEP 503
  name) is required somewhere in the same include tree. Other constraints are
  dropped. As in pip, ``-r`` inside a constraint file includes requirements.
  The requirement itself stays as written (``django>=4`` is an unpinned row at
  its own line): the version comes from the constraint's row, which is where a
  patch must change it. A constraints file found on its own (``constraints*.txt``
  not read through any ``-c``) is parsed by :func:`parse_constraints_tree`; the
  project scan keeps its pins for packages the project requires elsewhere.
* ``-e``/editable and URL/VCS requirements are recorded unpinned, named by
  ``#egg=`` or the archive filename; local directories (``-e .``) cannot be
  named without building them and are skipped. Index and install options
  (``-i``, ``--extra-index-url``, ``--find-links``, ``--pre``, ``--no-binary``...)
  configure pip rather than the dependency set and are ignored.
* ``${VAR}`` environment references are left unexpanded: results must not
  depend on the environment of the worker that parses them.
* Bounded (:class:`~.records.ScanLimits`): each file read is refused over the size cap, a
  logical line over ``max_line_chars`` is reported and skipped, the parse stops as soon as
  the tree passes ``max_dependencies`` (the whole manifest is then skipped), and past
  ``max_errors`` errors are counted, not kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement

from .discovery import CONSTRAINTS, REQUIREMENTS
from .pip_format import (
    RequirementInfo,
    logical_lines,
    looks_like_url,
    parse_editable,
    parse_options,
    parse_requirement_text,
    split_args_options,
)
from .records import (
    PYPI,
    ManifestError,
    ParsedDependency,
    ParsedManifest,
    TooManyDependencies,
    limits,
    normalise_name,
    read_text,
    relative_posix,
    too_many_dependencies,
)


class _Walker:
    """State of one parse: collected dependencies, errors and the include stack."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.requirements: list[ParsedDependency] = []
        self.constraints: list[ParsedDependency] = []
        self.errors: list[ManifestError] = []
        self.active: list[Path] = []  # files currently being read, to detect cycles
        self.seen: set[Path] = set()  # files already read in this parse
        self.unread: list[str] = []  # files of this tree that could not be read
        self.limits = limits()
        self.unlisted = 0  # errors past limits.max_errors, counted only

    def error(self, rel: str, line: int | None, reason: str) -> None:
        if len(self.errors) >= self.limits.max_errors:
            self.unlisted += 1
            return
        self.errors.append(ManifestError(rel, line, reason))

    def walk(self, path: Path, constraint: bool) -> None:
        resolved = path.resolve()
        rel = relative_posix(self.root, resolved)
        self.seen.add(resolved)
        try:
            text = read_text(resolved)
        except UnicodeDecodeError as exc:
            self.unread.append(rel)
            self.error(rel, None, f"not UTF-8 text (byte {exc.start}: {exc.reason})")
            return
        except OSError as exc:
            self.unread.append(rel)
            self.error(rel, None, f"cannot read file: {exc}")
            return
        self.active.append(resolved)
        try:
            for number, line in logical_lines(text):
                if len(line) > self.limits.max_line_chars:
                    self.error(rel, number, f"line of {len(line):,} characters, over "
                                            f"{self.limits.max_line_chars:,}; skipped")
                    continue
                self._line(resolved, rel, number, line, constraint)
        finally:
            self.active.pop()

    def _line(self, path: Path, rel: str, number: int, line: str, constraint: bool) -> None:
        args, option_text = split_args_options(line)
        try:
            options = parse_options(option_text)
        except ValueError as exc:
            self.error(rel, number, f"invalid option: {exc}")
            return
        if args:
            # Per-requirement options: only --hash matters to us (pip's "hash-checking mode").
            hashes = tuple(value for name, value in options if name == "--hash" and value)
            self._requirement(rel, number, args, hashes, constraint)
            return
        for name, value in options:
            if name in ("-r", "-c") and value:
                self._include(path, rel, number, value, constraint=name == "-c")
            elif name == "-e" and value and not constraint:
                self._editable(rel, number, value)
            # Everything else (--index-url, -i, --find-links, --pre, --no-binary, ...) is
            # pip configuration, not a dependency: ignored on purpose.

    def _record(self, info: RequirementInfo, rel: str, number: int,
                hashes: tuple[str, ...], constraint: bool) -> None:
        dep = ParsedDependency(
            ecosystem=PYPI,
            name=info.name,
            normalised_name=normalise_name(PYPI, info.name),
            version=info.version,
            specifier=info.specifier,
            manifest_path=rel,
            line=number,
            direct=True,
            extras=info.extras,
            marker=info.marker,
            hashes=hashes,
        )
        if not constraint:
            self.requirements.append(dep)
        elif dep.version is not None:
            self.constraints.append(dep)
        if len(self.requirements) + len(self.constraints) > self.limits.max_dependencies:
            raise TooManyDependencies

    def _requirement(self, rel: str, number: int, text: str,
                     hashes: tuple[str, ...], constraint: bool) -> None:
        try:
            info = parse_requirement_text(text)
        except (InvalidRequirement, InvalidMarker) as exc:
            self.error(rel, number, str(exc))
            return
        if info is not None:
            self._record(info, rel, number, hashes, constraint)

    def _editable(self, rel: str, number: int, value: str) -> None:
        try:
            info = parse_editable(value)
        except (InvalidRequirement, InvalidMarker) as exc:
            self.error(rel, number, str(exc))
            return
        if info is not None:
            self._record(info, rel, number, (), constraint=False)

    def _include(self, path: Path, rel: str, number: int, value: str, constraint: bool) -> None:
        if looks_like_url(value):
            self.error(rel, number, f"remote requirements file not fetched: {value}")
            return
        target = (path.parent / value).resolve()
        if not target.is_relative_to(self.root):
            self.error(rel, number, f"included file is outside the project: {value}")
            return
        if target in self.active:
            self.error(rel, number, f"circular include of {value} skipped")
            return
        if target in self.seen:
            return  # already read through another include of this parse
        if not target.is_file():
            self.error(rel, number, f"included file not found: {value}")
            return
        self.walk(target, constraint)

    def dependencies(self) -> list[ParsedDependency]:
        required = {dep.normalised_name for dep in self.requirements}
        pins = [dep for dep in self.constraints if dep.normalised_name in required]
        return self.requirements + pins


def parse_requirements_tree(root: Path, path: Path) -> tuple[ParsedManifest, frozenset[Path]]:
    """Parse a requirements file and everything it includes.

    Also returns the resolved paths of the other files read (via ``-r``/``-c``)
    so :func:`parse_project` can avoid parsing them again on their own.
    """
    walker = _Walker(root)
    resolved = Path(path).resolve()
    rel = relative_posix(walker.root, resolved)
    try:
        walker.walk(Path(path), constraint=False)
    except TooManyDependencies:
        manifest = too_many_dependencies(
            rel, REQUIREMENTS, f"more than {walker.limits.max_dependencies:,}")
        read = tuple(relative_posix(walker.root, p) for p in sorted(walker.seen))
        return (ParsedManifest(manifest.path, REQUIREMENTS, [], manifest.errors, unread=read),
                frozenset(walker.seen - {resolved}))
    errors = walker.errors
    if walker.unlisted:
        errors = [*errors, ManifestError(rel, None, f"{walker.unlisted:,} more errors not listed")]
    manifest = ParsedManifest(
        path=rel,
        kind=REQUIREMENTS,
        dependencies=walker.dependencies(),
        errors=errors,
        unread=tuple(walker.unread),
    )
    return manifest, frozenset(walker.seen - {resolved})


@dataclass(frozen=True)
class ConstraintsTree:
    """A constraints file read on its own, before knowing what the project requires."""

    path: str
    requirements: tuple[ParsedDependency, ...]  # brought in by its own "-r" (as in pip)
    pins: tuple[ParsedDependency, ...]  # every exact pin of the file and its "-c" includes
    errors: tuple[ManifestError, ...]
    unread: tuple[str, ...]
    included: frozenset[Path]  # the other files read, resolved
    skipped: ParsedManifest | None = None  # over the dependency cap: reported as it is

    def manifest(self, required: Iterable[str] = ()) -> ParsedManifest:
        """The dependencies it gives when the project requires ``required`` (PEP 503 names):
        the pins of required packages (and of those its own ``-r`` includes require)."""
        if self.skipped is not None:
            return self.skipped
        wanted = set(required) | {d.normalised_name for d in self.requirements}
        pins = [d for d in self.pins if d.normalised_name in wanted]
        return ParsedManifest(self.path, CONSTRAINTS, [*self.requirements, *pins],
                              list(self.errors), self.unread)


def parse_constraints_tree(root: Path, path: Path) -> ConstraintsTree:
    """Read a constraints file (``constraints*.txt``) and what it includes; a constraint
    alone never makes a dependency: :meth:`ConstraintsTree.manifest` keeps the pins of the
    packages the caller says are required."""
    walker = _Walker(root)
    resolved = Path(path).resolve()
    rel = relative_posix(walker.root, resolved)
    try:
        walker.walk(Path(path), constraint=True)
    except TooManyDependencies:
        manifest = too_many_dependencies(
            rel, CONSTRAINTS, f"more than {walker.limits.max_dependencies:,}")
        read = tuple(relative_posix(walker.root, p) for p in sorted(walker.seen))
        skipped = ParsedManifest(manifest.path, CONSTRAINTS, [], manifest.errors, unread=read)
        return ConstraintsTree(rel, (), (), tuple(manifest.errors), read,
                               frozenset(walker.seen - {resolved}), skipped)
    errors = walker.errors
    if walker.unlisted:
        errors = [*errors, ManifestError(rel, None, f"{walker.unlisted:,} more errors not listed")]
    return ConstraintsTree(rel, tuple(walker.requirements), tuple(walker.constraints),
                           tuple(errors), tuple(walker.unread),
                           frozenset(walker.seen - {resolved}))


def parse_constraints(root: Path, path: Path) -> ParsedManifest:
    """A constraints file parsed alone: nothing requires its packages, so it gives no
    dependency of its own (errors and unreadable files are still reported)."""
    return parse_constraints_tree(root, path).manifest()


def parse_requirements(root: Path, path: Path) -> ParsedManifest:
    """Parse a pip requirements file (see the module docstring for the rules)."""
    return parse_requirements_tree(root, path)[0]
