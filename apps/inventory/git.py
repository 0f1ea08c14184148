"""Read-only access to a project's git working copy.

A scan reads the manifests of the default branch as committed, never the files the user
has checked out (they may be on another branch, or mid-edit): the branch's tree is
exported with ``git archive`` into a temporary folder and parsed there.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 120


class GitError(Exception):
    pass


def git(repo: str | Path, *args: str, timeout: int = GIT_TIMEOUT_S,
        env: dict[str, str] | None = None, input: str | None = None) -> str:
    """Run git in ``repo`` with a scrubbed environment; GitError with git's message."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout,
            input=input,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin",
                 "HOME": tempfile.gettempdir(), "LC_ALL": "C", **(env or {})},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {' '.join(args)} failed: {exc}") from exc
    if done.returncode != 0:
        output = "\n".join(part for part in (done.stderr.strip(), done.stdout.strip()) if part)
        raise GitError(f"git {args[0]}: {output}")
    return done.stdout


def file_at(repo: str | Path, commit: str, path: str) -> str:
    """A file's exact text at ``commit`` (bytes decoded as UTF-8, CRLF kept)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True,
            timeout=GIT_TIMEOUT_S, env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C",
                                        "HOME": tempfile.gettempdir()},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git show failed: {exc}") from exc
    if done.returncode != 0:
        raise GitError(f"git show: {done.stderr.decode(errors='replace').strip()}")
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GitError(f"{path} is not UTF-8 text") from exc


def check_working_copy(path: str | Path, branch: str) -> str:
    """The commit ``branch`` points at; GitError naming what is wrong otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise GitError(f"{path} is not a directory")
    try:
        git(path, "rev-parse", "--git-dir")
    except GitError as exc:
        raise GitError(f"{path} is not a git working copy") from exc
    try:
        return git(path, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}").strip()
    except GitError as exc:
        raise GitError(f"branch {branch!r} does not exist in {path}") from exc


@dataclass(frozen=True)
class SkippedEntry:
    """A tree entry the export left out, and why (shown in the project's scan errors)."""

    path: str
    reason: str


class TreeTooLarge(GitError):
    """The tree has more entries than the export may write (``max_entries``)."""


# Linux refuses longer names (ENAMETOOLONG); no manifest is ever named like that.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def printable_path(name: str) -> str:
    """A tar member name as text any database stores: undecodable bytes as ``\\xNN``, control
    characters (NUL included) escaped, at most 300 characters."""
    raw = name.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= 300 else text[:297] + "..."


def entry_refusal(member: tarfile.TarInfo) -> str | None:
    """Why a member of a repository's tar export is not written to disk, or None.

    ``git archive`` writes only folders, files and symbolic links; anything else came from
    elsewhere. Links stay when they resolve inside the tree (a project's own
    ``requirements.txt -> requirements/base.txt`` keeps working); absolute ones and those
    climbing out of the tree are refused by name, before anything is written.
    """
    name = member.name
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not UTF-8"
    if "\x00" in name:
        return "file name contains a NUL byte"
    if len(encoded) > MAX_PATH_BYTES or any(
            len(part.encode()) > MAX_NAME_BYTES for part in name.split("/")):
        return f"file name longer than {MAX_NAME_BYTES} bytes (or path over {MAX_PATH_BYTES})"
    if name.startswith("/") or posixpath.isabs(name):
        return "absolute path"
    if ".." in name.split("/"):
        return "path with '..'"
    if member.islnk():
        return "hard link (git never exports one)"
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            return f"absolute symlink (to {printable_path(target)})"
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if resolved == ".." or resolved.startswith("../"):
            return f"symlink leaves the repository (to {printable_path(target)})"
        return None
    if not (member.isfile() or member.isdir()):
        return "not a file, folder or symlink (device, FIFO or other special file)"
    return None


def _placeholder(target: Path, name: str, size: int) -> None:
    """An empty sparse file of ``size`` bytes at ``name``: a scan refuses it from its size
    (SCAN_MAX_MANIFEST_BYTES) exactly as it would the real file, which is never written."""
    root = os.path.realpath(target)
    parent = os.path.realpath(os.path.dirname(os.path.join(root, name)))
    if parent != root and not parent.startswith(root + os.sep):
        raise OSError(f"{name} would be written outside the tree")
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, os.path.basename(name)), "xb") as handle:
        handle.truncate(size)


def extract_members(archive: tarfile.TarFile, target: Path, *, max_entries: int | None = None,
                    max_file_bytes: int | None = None) -> list[SkippedEntry]:
    """Write the acceptable members of ``archive`` under ``target``; return the others.

    Each member is checked by :func:`entry_refusal`, then written with tarfile's ``data``
    filter as a second line of defence (a member under a link, a link into a link...): a
    refusal of either is recorded and the export carries on. Past ``max_entries`` members
    the export stops with TreeTooLarge (a partial tree would look like deleted manifests).
    A file over ``max_file_bytes`` becomes a placeholder of its size, its data skipped.
    """
    skipped: list[SkippedEntry] = []
    for count, member in enumerate(archive, start=1):
        if max_entries is not None and count > max_entries:
            raise TreeTooLarge(
                f"the tree has more than {max_entries} entries (SCAN_MAX_TREE_ENTRIES)")
        reason = entry_refusal(member)
        if reason is None and max_file_bytes is not None and member.isfile() \
                and member.size > max_file_bytes:
            try:
                _placeholder(target, member.name, member.size)
            except OSError as exc:
                reason = f"not extracted: {exc.__class__.__name__}"
        elif reason is None:
            try:
                archive.extract(member, target, filter="data")
            except (tarfile.FilterError, OSError) as exc:
                reason = f"not extracted: {exc.__class__.__name__}"
        if reason is not None:
            skipped.append(SkippedEntry(printable_path(member.name), reason))
    return skipped


# Excluded paths are passed to git archive as arguments: keep them well under ARG_MAX.
_MAX_EXCLUDES = 1_000
_MAX_EXCLUDE_BYTES = 256 * 1024


def _large_blobs(path: str | Path, commit: str, over: int,
                 max_entries: int | None) -> list[tuple[bytes, int]]:
    """Files of ``commit`` larger than ``over`` bytes, from ``git ls-tree -l`` (sizes come
    from object headers: no blob is inflated), streamed so a huge tree is never held."""
    proc = subprocess.Popen(["git", "-C", str(path), "ls-tree", "-r", "-l", "-z", commit],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    large: list[tuple[bytes, int]] = []
    count, pending = 0, b""
    try:
        for chunk in iter(lambda: proc.stdout.read(65536), b""):
            *records, pending = (pending + chunk).split(b"\0")
            for record in records:
                count += 1
                if max_entries is not None and count > max_entries:
                    raise TreeTooLarge(f"the tree has more than {max_entries} entries "
                                       f"(SCAN_MAX_TREE_ENTRIES)")
                meta, _, name = record.partition(b"\t")
                fields = meta.split()
                if len(fields) == 4 and fields[1] == b"blob" and fields[0] != b"120000" \
                        and fields[3].isdigit() and int(fields[3]) > over:
                    large.append((name, int(fields[3])))
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    _out, err = proc.communicate(timeout=GIT_TIMEOUT_S)
    if proc.returncode != 0:
        raise GitError(f"git ls-tree {commit}: {err.decode(errors='replace').strip()}")
    return large


@contextmanager
def exported_tree(path: str | Path, commit: str, *, skipped: list[SkippedEntry] | None = None,
                  max_entries: int | None = None, max_file_bytes: int | None = None):
    """The files of ``commit`` in a temporary folder, removed afterwards.

    Entries that are not safe to write (see :func:`entry_refusal`) are left out and, when
    ``skipped`` is given, appended to it; the rest of the tree is exported. With
    ``max_file_bytes`` (scans), larger files are empty placeholders of their size: the
    scan refuses them from their size anyway, and git never inflates them (they are
    excluded from the archive by path, found with ``git ls-tree``).
    """
    with tempfile.TemporaryDirectory(prefix="immune-scan-") as target:
        command = ["git", "-C", str(path), "archive", "--format=tar", commit]
        excluded: list[tuple[bytes, int]] = []
        if max_file_bytes is not None:
            budget = _MAX_EXCLUDE_BYTES
            for name, size in _large_blobs(path, commit, max_file_bytes, max_entries):
                budget -= len(name) + 20
                if len(excluded) >= _MAX_EXCLUDES or budget < 0:
                    break  # the rest stream through, and become placeholders as they come
                excluded.append((name, size))
            if excluded:
                command += ["--", ".", *(b":(exclude,literal)" + n for n, _ in excluded)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        refused: list[SkippedEntry] = []
        failure: Exception | None = None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                refused = extract_members(archive, Path(target), max_entries=max_entries,
                                          max_file_bytes=max_file_bytes)
        except TreeTooLarge:
            proc.kill()
            raise
        except tarfile.TarError as exc:  # git wrote nothing or stopped mid-way
            failure = exc
        finally:
            try:
                _out, err = proc.communicate(timeout=GIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                _out, err = proc.communicate()
        message = err.decode(errors="replace").strip()
        if excluded and proc.returncode != 0 and "did not match any files" in message:
            proc.returncode, failure = 0, None  # every file was excluded: nothing else to write
        if proc.returncode != 0:
            raise GitError(f"git archive {commit}: {message}")
        if failure is not None:
            raise GitError(f"git archive {commit}: unreadable archive ({failure})")
        for name, size in excluded:
            text = name.decode("utf-8", "surrogateescape")
            member = tarfile.TarInfo(text)
            member.size = size
            reason = entry_refusal(member)
            if reason is None:
                try:
                    _placeholder(Path(target), text, size)
                except OSError as exc:
                    reason = f"not extracted: {exc.__class__.__name__}"
            if reason is not None:
                refused.append(SkippedEntry(printable_path(text), reason))
        refused += _drop_escaping_links(Path(target))
        if skipped is not None:
            skipped.extend(refused)
        yield Path(target)


def _drop_escaping_links(root: Path) -> list[SkippedEntry]:
    """The filter checks each link when it is extracted; a link checked before a later one
    existed can resolve out of the tree once both do (``a -> x/../../..`` with ``x`` a link
    made after it). So the final tree is checked too: a link leaving it is removed."""
    inside = os.path.realpath(root)
    dropped: list[SkippedEntry] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            item = os.path.join(folder, name)
            if os.path.islink(item):
                resolved = os.path.realpath(item)
                if resolved != inside and not resolved.startswith(inside + os.sep):
                    os.unlink(item)
                    dropped.append(SkippedEntry(
                        printable_path(os.path.relpath(item, root)),
                        "symlink leaves the repository (through another link)"))
    return dropped
