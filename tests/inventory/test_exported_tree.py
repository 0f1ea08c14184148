"""A repository's files extracted for the worker never link out of their folder."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from apps.inventory.git import SkippedEntry, TreeTooLarge, exported_tree, extract_members
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
    skipped = []
    with exported_tree(repo, "HEAD", skipped=skipped) as tree:
        assert (tree / "README").read_text() == "hi\n"
        assert not os.path.lexists(tree / "requirements.txt")
        assert os.path.islink(deep_in(tree) / "x")  # the inside link stays
    assert skipped == [SkippedEntry("requirements.txt",
                                    "symlink leaves the repository (through another link)")]


def deep_in(tree: Path) -> Path:
    return tree.joinpath(*["zz"] * 10)


def hostile_tar() -> bytes:
    """Entries ``git archive`` never writes, for a tar stream from anywhere else: the filter
    is the same whatever made the stream."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        def add(name, kind=tarfile.REGTYPE, data=b"", **attrs):
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            for key, value in attrs.items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(data))

        add("requirements.txt", data=b"PyYAML==5.3.1\n")
        add("/etc/cron.d/evil", data=b"x")
        add("../escape.txt", data=b"x")
        add("a/../../escape2.txt", data=b"x")
        add("hard", tarfile.LNKTYPE, linkname="requirements.txt")
        add("hard-out", tarfile.LNKTYPE, linkname="/etc/passwd")
        add("null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("disk", tarfile.BLKTYPE, devmajor=8, devminor=0)
        add("pipe", tarfile.FIFOTYPE)
        add("abs-link", tarfile.SYMTYPE, linkname="/etc/passwd")
        add("up-link", tarfile.SYMTYPE, linkname="../../etc/passwd")
        add("ok-link", tarfile.SYMTYPE, linkname="requirements.txt")
        add("y" * 256, data=b"x")
    return buffer.getvalue()


def test_entries_git_never_exports_are_skipped_with_their_reason(tmp_path):
    target = tmp_path / "tree"
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(hostile_tar()), mode="r|") as archive:
        skipped = extract_members(archive, target)
    assert sorted(os.listdir(target)) == ["ok-link", "requirements.txt"]
    assert (target / "ok-link").read_text() == "PyYAML==5.3.1\n"
    assert not (tmp_path / "escape.txt").exists()
    reasons = {entry.path: entry.reason for entry in skipped}
    assert reasons == {
        "/etc/cron.d/evil": "absolute path",
        "../escape.txt": "path with '..'",
        "a/../../escape2.txt": "path with '..'",
        "hard": "hard link (git never exports one)",
        "hard-out": "hard link (git never exports one)",
        "null": "not a file, folder or symlink (device, FIFO or other special file)",
        "disk": "not a file, folder or symlink (device, FIFO or other special file)",
        "pipe": "not a file, folder or symlink (device, FIFO or other special file)",
        "abs-link": "absolute symlink (to /etc/passwd)",
        "up-link": "symlink leaves the repository (to ../../etc/passwd)",
        "y" * 256: "file name longer than 255 bytes (or path over 4096)",
    }


def test_a_stream_past_the_entry_cap_stops(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(hostile_tar()), mode="r|") as archive, \
            pytest.raises(TreeTooLarge, match="more than 2 entries"):
        extract_members(archive, tmp_path, max_entries=2)
