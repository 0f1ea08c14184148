"""Does a code patch compile? The Python files a diff touches, byte-compiled in the sandbox.

A code patch that does not even compile cannot be an effective fix: its service would not
start, and a wargame of it ends ``error``. ML-first checks it before predicting (docs/ml.md,
"A patch that does not compile"), and the corpus records it beside each code patch's run.
The files are a reviewer's code, so they are compiled (never run) by the wargame interpreter
in a sandbox of their own (sandbox.py): Python's parser is not where untrusted input belongs
in the worker's own process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from apps.inventory.git import GitError, exported_tree
from apps.wargaming.runner import limits
from apps.wargaming.sandbox import Sandbox, SandboxUnavailable

#: Compiles each file named on the command line (no .pyc written, nothing executed) and
#: prints one JSON object: file → null (compiles) or the error.
_COMPILE = b'''\
import json, sys
errors = {}
for name in sys.argv[1:]:
    try:
        with open(name, "rb") as handle:
            compile(handle.read(), name, "exec", dont_inherit=True)
        errors[name] = None
    except SyntaxError as exc:
        errors[name] = f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    except (OSError, ValueError, MemoryError, RecursionError) as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(errors))
'''
ROOT = "/srv/app"
CACHE_S = 7 * 24 * 3600


@dataclass(frozen=True)
class CompileResult:
    """``compiles`` is None when nothing was checked (no Python file, or no verdict: the
    sandbox unavailable, the revision not readable)."""

    compiles: bool | None
    files: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict:
        return {"compiles": self.compiles, "files": list(self.files), "errors": self.errors,
                "reason": self.reason}


def python_files(diff: str) -> list[str]:
    """The Python files a unified diff leaves in the tree (added or changed; deleted files
    are gone and cannot break anything)."""
    found = []
    for line in diff.splitlines():
        if line.startswith("+++ "):
            name = line[4:].split("\t")[0].strip()
            if name == "/dev/null":
                continue
            name = name[2:] if name.startswith("b/") else name
            if name.endswith(".py") and name not in found and ".." not in Path(name).parts:
                found.append(name)
    return found


def tree_compiles(tree: Path, files: list[str]) -> CompileResult:
    """Byte-compile ``files`` (paths inside ``tree``) in a sandbox."""
    present = [f for f in files if (tree / f).is_file()]
    if not present:
        return CompileResult(None, tuple(files), reason="no Python file of the diff is in the "
                             "revision")
    try:
        with Sandbox("compile", limits()) as box:
            app = box.private_copy(tree, ROOT)
            script = box.add_file("/immune/compile.py", _COMPILE)
            result = box.run([settings.WARGAME_PYTHON, script, *present], cwd=app,
                             env=box.environment())
    except SandboxUnavailable as exc:
        return CompileResult(None, tuple(present), reason=str(exc))
    try:
        errors = json.loads(result.stdout.strip().splitlines()[-1])
        if not isinstance(errors, dict):
            raise ValueError("not an object")
    except (ValueError, IndexError):
        reason = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        return CompileResult(None, tuple(present), reason=f"the compile check gave no "
                             f"answer ({reason})")
    failed = {str(k): str(v)[:500] for k, v in errors.items() if v}
    return CompileResult(not failed, tuple(present), failed,
                         reason="; ".join(f"{k}: {v}" for k, v in failed.items()))


def revision_compiles(*, repo: str, commit: str, diff: str) -> CompileResult:
    """Whether the Python files ``diff`` touches compile at ``commit`` of ``repo``. Cached
    by repository, commit and files (a commit's content never changes)."""
    files = python_files(diff)
    if not files:
        return CompileResult(None, reason="the diff touches no Python file")
    if not commit:
        return CompileResult(None, tuple(files), reason="the patch has no commit yet")
    key = "wargaming:compiles:" + hashlib.sha256(
        "\n".join([str(repo), commit, *files]).encode()).hexdigest()[:32]
    if (hit := cache.get(key)) is not None:
        return CompileResult(hit["compiles"], tuple(hit["files"]), hit["errors"], hit["reason"])
    try:
        with exported_tree(repo, commit) as tree:
            result = tree_compiles(Path(tree), files)
    except (GitError, OSError) as exc:
        return CompileResult(None, tuple(files), reason=f"the revision could not be read: "
                             f"{type(exc).__name__}: {exc}")
    if result.compiles is not None:
        cache.set(key, result.as_dict(), CACHE_S)
    return result


def patch_compiles(patch) -> CompileResult:
    """A code patch revision's check (``Patch``: its project's repository at its commit)."""
    return revision_compiles(repo=patch.project.path, commit=patch.commit_sha, diff=patch.diff)
