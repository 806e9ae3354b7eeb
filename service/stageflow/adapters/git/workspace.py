"""The `Workspace` port over the working tree of the clone, for one operation of a write."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stageflow.domain.errors import StageflowError


def text_of(data: bytes) -> str:
    """Decode a file as ``Path.read_text(encoding="utf-8")`` does (universal newlines).

    The text layer decodes and translates in 8 KB chunks: for a 1 MB flags.json ~0.8 ms, where
    this takes ~0.1 ms.
    """
    text = data.decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


@dataclass
class CloneWorkspace:
    """The `Workspace` port over the working tree of the clone, at one base revision."""

    root: Path
    revision: str
    written: set[str] = field(default_factory=set)
    blob_of: Callable[[str, str], str | None] | None = None  # (revision, path) -> blob id

    def _path(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise StageflowError(f"path {rel!r} leaves the repository")
        return path

    def read(self, path: str) -> str | None:
        try:
            return text_of(self._path(path).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def unwritten_blob(self, path: str) -> str | None:
        # The clone is reset to `revision` before the operation: an unwritten file is the blob.
        if self.blob_of is None or path in self.written:
            return None
        return self.blob_of(self.revision, path)

    def write(self, path: str, text: str) -> None:
        target = self._path(path)
        data = text.encode("utf-8")
        try:
            size: int | None = target.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            size = None
        # The file's text (decoded, newlines translated) is never longer than its bytes: a file
        # smaller than the new text cannot hold it, and a toggle of a 1 MB flags.json need not
        # read it back first.
        if size is not None and size >= len(data):
            current = target.read_bytes()
            if current == data or text_of(current) == text:
                return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Overwritten in place, then cut to length: the same bytes as `write_bytes`, but without
        # truncating first, which makes the file system free every block and allocate it again
        # (on ext4 ~0.8 ms for 1 MB, twenty times the write itself).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            written = 0
            while written < len(data):
                written += os.pwrite(fd, memoryview(data)[written:], written)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        self.written.add(path)

    def delete(self, path: str) -> None:
        target = self._path(path)
        if target.exists():
            target.unlink()
            self.written.add(path)

    def directory(self, path: str) -> Path:
        return self._path(path)
