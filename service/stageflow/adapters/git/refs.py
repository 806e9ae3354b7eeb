"""Refs and object ids read as files and hashes, where asking git would start a process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HEX = frozenset("0123456789abcdef")


def is_object_id(text: str) -> bool:
    """True for a full SHA-1 or SHA-256 object id in lower case."""
    return len(text) in (40, 64) and all(c in _HEX for c in text)


def is_full_sha(revision: str) -> bool:
    """True for a full SHA-1: a name that can never come to mean another commit."""
    return len(revision) == 40 and all(c in _HEX for c in revision)


def object_id(kind: bytes, data: bytes, like: str) -> str:
    """Return the id git gives ``data`` as an object of ``kind`` (the hash of ids like ``like``)."""
    digest = hashlib.sha256() if len(like) == 64 else hashlib.sha1()
    digest.update(b"%s %d\0" % (kind, len(data)))
    digest.update(data)
    return digest.hexdigest()


class RefFiles:
    """Reads refs from a repository's files, remembering loose refs by the file's identity.

    A loose ref is replaced by a rename and `pack-refs` writes ``packed-refs`` before it removes
    the loose file, so each read sees a whole, current value. Anything unusual (a symbolic ref, a
    reftable repository, a missing ref) reads as None, and the caller asks git itself.

    A loose ref's value is kept with the file's identity (inode, times, size): every update is a
    new file renamed into place, so while those match one ``stat`` answers, without reading it
    (fewer system calls per read, each of which gives up the GIL under load).
    """

    def __init__(self) -> None:
        # path -> ((inode, mtime, ctime, size), sha) of the loose refs read
        self._loose: dict[str, tuple[tuple[int, int, int, int], str]] = {}

    def read(self, git_dir: Path, ref: str) -> str | None:
        """Return the SHA ``ref`` names in ``git_dir``, or None when git must be asked."""
        path = os.path.join(git_dir, ref)
        try:
            st = os.stat(path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            known = self._loose.get(path)
            if known is not None and known[0] == seen:
                return known[1]
            with open(path, "rb") as file:
                text = file.read().decode("ascii").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return _packed(git_dir, ref)
        except (OSError, UnicodeError):
            return None
        if not text:
            return _packed(git_dir, ref)
        if not is_object_id(text):
            return None
        self._loose[path] = (seen, text)
        return text


def _packed(git_dir: Path, ref: str) -> str | None:
    """Return the SHA of ``ref`` in ``packed-refs`` (None: not there, or a reftable repository)."""
    if (git_dir / "reftable").exists():
        return None
    try:
        packed = (git_dir / "packed-refs").read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None
    suffix = " " + ref
    for line in packed.splitlines():
        if line.endswith(suffix) and not line.startswith(("#", "^")):
            sha = line[: -len(suffix)]
            return sha if is_object_id(sha) else None
    return None
