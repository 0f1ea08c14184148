"""Read-only access to a project's git working copy.

A scan reads the manifests of the default branch as committed, never the files the user
has checked out (they may be on another branch, or mid-edit): the branch's tree is
exported with ``git archive`` into a temporary folder and parsed there.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
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


@contextmanager
def exported_tree(path: str | Path, commit: str):
    """The files of ``commit`` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="immune-scan-") as target:
        proc = subprocess.Popen(
            ["git", "-C", str(path), "archive", "--format=tar", commit],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                # The "data" filter refuses absolute paths, links out of the tree and devices.
                archive.extractall(target, filter="data")
        finally:
            _out, err = proc.communicate(timeout=GIT_TIMEOUT_S)
        if proc.returncode != 0:
            raise GitError(f"git archive {commit}: {err.decode(errors='replace').strip()}")
        _drop_escaping_links(Path(target))
        yield Path(target)


def _drop_escaping_links(root: Path) -> None:
    """The filter checks each link when it is extracted; a link checked before a later one
    existed can resolve out of the tree once both do (``a -> x/../../..`` with ``x`` a link
    made after it). So the final tree is checked too: a link leaving it is removed."""
    inside = os.path.realpath(root)
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            item = os.path.join(folder, name)
            if os.path.islink(item):
                resolved = os.path.realpath(item)
                if resolved != inside and not resolved.startswith(inside + os.sep):
                    os.unlink(item)
