"""A repository's files extracted for the worker never link out of their folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from apps.inventory.git import exported_tree
from tests.factories import GIT_ENV


def test_a_link_that_escapes_only_once_a_later_link_exists_is_dropped(tmp_path):
    """``requirements.txt -> zz/…/x/../…/etc/passwd`` passes the extraction filter while
    ``x`` does not exist yet (checked by name); ``x -> ../..`` (inside) comes later, and
    together they lead to the host's /etc/passwd. The final tree is checked as well."""
    repo = tmp_path / "repo"
    deep = repo.joinpath(*["zz"] * 10)
    deep.mkdir(parents=True)
    os.symlink("/".join([".."] * 9), deep / "x")
    os.symlink("/".join(["zz"] * 10) + "/x/" + "/".join([".."] * 11) + "/etc/passwd",
               repo / "requirements.txt")
    (repo / "README").write_text("hi\n")
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "links"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    with exported_tree(repo, "HEAD") as tree:
        assert (tree / "README").read_text() == "hi\n"
        assert not os.path.lexists(tree / "requirements.txt")
        assert os.path.islink(deep_in(tree) / "x")  # the inside link stays


def deep_in(tree: Path) -> Path:
    return tree.joinpath(*["zz"] * 10)
