"""What goes into an environment build, and what comes out of it, treated as hostile.

In: requirement strings. A string that starts with ``-`` would be an option to uv
(``--find-links /root``), so it is refused. A local folder or file (``./helper``,
``name @ file:///…``) must lie in the exploit's own folder or an exploit folder, and it is
keyed by its resolved path and a digest of its content, so two PoCs' ``./helper`` never
share an environment and a changed folder is built anew.

Out: the built environment leaves the build's sandbox as a tar stream (the sandbox's
driver writes it once every other process of the build is dead). ``unpack`` reads at most
``cap`` bytes and ``max_entries`` entries, takes regular files, folders and symlinks only
(no FIFO, device or hard link), owned by the worker, without setuid/setgid bits or
group/other write, and writes no member outside the target (tarfile's ``tar`` filter).
Symlinks keep their targets (a venv's ``bin/python`` points at the system interpreter):
they resolve only inside sandboxes, and the worker never follows them (``_seal`` uses
``lstat``).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement


class BuildInputError(Exception):
    """A requirement that must not reach the build."""


def check_option(requirement: str) -> None:
    if requirement.startswith("-"):
        raise BuildInputError(f"requirement {requirement!r} is an option, not a requirement")


def local_path(requirement: str, base: Path | None) -> tuple[Path | None, str]:
    """(resolved path, "name @ " prefix or "") of a local requirement, or (None, "")."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        parsed = None
    if parsed is not None:
        if parsed.url and parsed.url.startswith("file:"):
            return Path(unquote(urlsplit(parsed.url).path)).resolve(), f"{parsed.name} @ "
        return None, ""
    if requirement.startswith(("/", "./", "../", "~", "file:")):
        text = unquote(urlsplit(requirement).path) if requirement.startswith("file:") \
            else requirement
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return path.resolve(), ""
    return None, ""


def checked_local(requirement: str, base: Path | None,
                  allowed: list[Path]) -> tuple[Path | None, str]:
    """``local_path`` that exists and lies in one of the ``allowed`` folders."""
    source, prefix = local_path(requirement, base)
    if source is None:
        return None, ""
    if not source.exists():
        raise BuildInputError(f"requirement {requirement!r}: {source} does not exist")
    if not any(source.is_relative_to(folder) for folder in allowed):
        # A PoC's author must not read the worker's files through the build (run as root).
        raise BuildInputError(f"requirement {requirement!r}: {source} is outside the "
                              "exploit's folder and WARGAME_EXPLOIT_DIRS")
    return source, prefix


def digest(path: Path) -> str:
    """Content of a file or folder tree (names, file bytes, link targets), symlinks unfollowed."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for folder, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            item = os.path.join(folder, name)
            h.update(os.path.relpath(item, path).encode() + b"\0")
            if os.path.islink(item):
                h.update(b"L" + os.readlink(item).encode())
            elif os.path.isfile(item):
                with open(item, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023
                        h.update(block)
    return h.hexdigest()


class _Capped:
    """A read-only stream that fails past ``cap`` bytes."""

    def __init__(self, raw, cap: int):
        self.raw, self.cap, self.read_bytes = raw, cap, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.read_bytes += len(data)
        if self.read_bytes > self.cap:
            raise BuildInputError(f"the built environment is larger than {self.cap} bytes")
        return data


def unpack(read_fd: int, target: Path, cap: int, max_entries: int) -> int:
    """The tar stream on ``read_fd`` into ``target`` (see the module doc); bytes read.
    At most ``max_entries`` entries: empty files cost the byte cap nothing, but each is an
    inode on the host's disk."""
    owner = 0 if os.geteuid() == 0 else None
    entries = 0
    with os.fdopen(read_fd, "rb") as raw:
        stream = _Capped(raw, cap)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                archive.members.clear()  # a stream of millions of entries keeps none
                entries += 1
                if entries > max_entries:
                    raise BuildInputError(f"the built environment has more than "
                                          f"{max_entries} entries")
                if not (member.isreg() or member.isdir() or member.issym()):
                    continue
                if owner is not None:
                    member.uid = member.gid = owner
                member.uname = member.gname = ""
                archive.extract(member, target, filter="tar", numeric_owner=True)
        return stream.read_bytes
