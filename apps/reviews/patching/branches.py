"""Patch branches in a project's git working copy, without touching the user's checkout.

Every write happens in a temporary detached worktree (``git worktree add --detach``): the
user's working tree, index and checked-out branch are never touched while a patch is
made. Approving merges with ``--no-ff`` (a real merge commit); a conflict is aborted, so
nothing half-done is left in the repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from apps.inventory.git import GitError, git


def _identity() -> dict[str, str]:
    name, email = settings.IMMUNE_GIT_NAME, settings.IMMUNE_GIT_EMAIL
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


@contextmanager
def repository_lock(repo: str) -> Iterator[None]:
    """Hold the repository for one write (merge, branch deletion) at a time across the
    processes of this host: decisions are applied by workers in parallel, and two git
    merges in one working copy collide on ``index.lock``. An flock on a file in the git
    directory; the kernel releases it if the process dies."""
    common = Path(git(repo, "rev-parse", "--git-common-dir").strip())
    if not common.is_absolute():
        common = Path(repo) / common
    with open(common / "immune-write.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def detached_worktree(repo: str, commit: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="immune-wt-") as parent:
        path = Path(parent) / "wt"
        git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
        try:
            yield path
        finally:
            try:
                git(repo, "worktree", "remove", "--force", str(path))
            except GitError:
                git(repo, "worktree", "prune")


def branch_exists(repo: str, branch: str) -> bool:
    try:
        git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    except GitError:
        return False
    return True


def branches_present(repo: str, prefix: str = "immune/") -> set[str] | None:
    """The branches under ``prefix`` in ``repo`` (one git call for a page of patches), or
    None when the repository cannot be read (moved, deleted)."""
    try:
        out = git(repo, "for-each-ref", "--format=%(refname)", f"refs/heads/{prefix}")
    except (GitError, OSError):
        return None
    return {line.removeprefix("refs/heads/") for line in out.splitlines() if line}


def apply_check(repo: str, base_commit: str, diff: str) -> None:
    """GitError carrying git's message when ``diff`` does not apply to ``base_commit``."""
    with detached_worktree(repo, base_commit) as wt:
        git(wt, "apply", "--check", "--whitespace=nowarn", "-", input=diff)


def commit_on_branch(
    *, repo: str, base_commit: str, branch: str, message: str,
    files: dict[str, str] | None = None, diff: str | None = None,
) -> tuple[str, str]:
    """Commit ``files`` (path → new text) or ``diff`` on a new ``branch`` from ``base_commit``.

    Returns (commit sha, the commit's unified diff). Refuses an existing branch name.
    """
    if branch_exists(repo, branch):
        raise GitError(f"branch {branch} already exists")
    with detached_worktree(repo, base_commit) as wt:
        if diff is not None:
            git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=diff)
        for relative, text in (files or {}).items():
            target = (wt / relative).resolve()
            if not target.is_relative_to(wt.resolve()):
                raise GitError(f"{relative} is outside the repository")
            target.write_bytes(text.encode("utf-8"))
            git(wt, "add", "--", relative)
        git(wt, "commit", "--quiet", "--no-verify", "-m", message, env=_identity())
        git(wt, "branch", branch, "HEAD")
        commit = git(wt, "rev-parse", "HEAD").strip()
        patch_diff = git(wt, "diff", f"{base_commit}..HEAD")
    return commit, patch_diff


def _worktree_of(repo: str, branch: str) -> Path | None:
    """The worktree that has ``branch`` checked out, if any."""
    current: Path | None = None
    for line in git(repo, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            current = Path(line.split(" ", 1)[1])
        elif line == f"branch refs/heads/{branch}":
            return current
    return None


def merge_branch(*, repo: str, target: str, branch: str, message: str) -> str:
    """Merge ``branch`` into ``target`` with a merge commit; returns the merge commit.

    Where ``target`` is checked out (the usual working copy), the merge runs there, and only
    when it has no uncommitted changes to tracked files; elsewhere it runs in a temporary
    worktree and the branch ref moves by compare-and-swap. A conflict is aborted. A branch
    already merged (an attempt repeated after a crash) is a no-op answering the target's
    head.
    """
    with repository_lock(repo):
        if _is_ancestor(repo, f"refs/heads/{branch}", f"refs/heads/{target}"):
            return git(repo, "rev-parse", f"refs/heads/{target}").strip()
        return _merge(repo, target, branch, message)


def _is_ancestor(repo: str, commit: str, of: str) -> bool:
    try:
        git(repo, "merge-base", "--is-ancestor", commit, of)
    except GitError:
        return False
    return True


def _merge(repo: str, target: str, branch: str, message: str) -> str:
    checked_out = _worktree_of(repo, target)
    if checked_out is not None:
        if git(checked_out, "status", "--porcelain", "--untracked-files=no").strip():
            raise GitError(f"{target} is checked out in {checked_out} with uncommitted "
                           "changes; commit or stash them, then approve again")
        try:
            git(checked_out, "merge", "--no-ff", "--no-edit", "-m", message, branch,
                env=_identity())
        except GitError:
            _abort_merge(checked_out)
            raise
        return git(checked_out, "rev-parse", "HEAD").strip()

    old = git(repo, "rev-parse", f"refs/heads/{target}").strip()
    with detached_worktree(repo, old) as wt:
        try:
            git(wt, "merge", "--no-ff", "--no-edit", "-m", message, branch, env=_identity())
        except GitError:
            _abort_merge(wt)
            raise
        merged = git(wt, "rev-parse", "HEAD").strip()
    # Compare-and-swap: fails if someone moved the branch meanwhile.
    git(repo, "update-ref", f"refs/heads/{target}", merged, old)
    return merged


def _abort_merge(worktree: Path) -> None:
    with contextlib.suppress(GitError):  # nothing to abort when the merge never started
        git(worktree, "merge", "--abort")


def delete_branch(*, repo: str, branch: str) -> None:
    with repository_lock(repo):
        git(repo, "branch", "-D", branch)
