"""The disk under the clones: room left for writes, and failures of the machine named as such."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import git

from stageflow.adapters.git.commits import GitFailed
from stageflow.domain.errors import StageflowError, Unavailable
from stageflow.logs import redact


class ClonesDisk:
    """The file system of ``<data dir>/clones``: checked before a write, blamed after one."""

    def __init__(self, clones_dir: Path, min_free_bytes: int = 0) -> None:
        self.clones_dir = clones_dir
        self.min_free_bytes = min_free_bytes

    def free_bytes(self) -> int:
        """Bytes free on the file system of the clones (the data dir)."""
        self.clones_dir.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.clones_dir).free

    def check(self) -> None:
        """Refuse a write while less than ``min_free_bytes`` is free."""
        if self.min_free_bytes <= 0:
            return
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise Unavailable(
                f"the disk holding {self.clones_dir} is nearly full ({free // 2**20} MiB free, "
                f"STAGEFLOW_MIN_FREE_DISK_MB asks for {self.min_free_bytes // 2**20}); free space "
                "there or grow the volume; nothing was committed",
                code="disk_full",
                details={"part": "disk", "free_bytes": free},
            )

    def failure(self, exc: Exception, workdir: Path | None) -> Exception:
        """Turn a failure of the machine under a write (disk, clone) into a 503 naming it."""
        if isinstance(exc, StageflowError):
            return exc
        text = redact(
            f"{exc.stderr or ''} {exc.stdout or ''}"
            if isinstance(exc, git.GitCommandError)
            else str(exc)
        )
        said = " ".join(text.split())
        number = exc.errno if isinstance(exc, OSError) else None
        if _full(number, text):
            return Unavailable(
                f"the disk holding {self.clones_dir} is full ({said[:200]}); "
                "free space there or grow the volume, then try again; nothing was committed",
                code="disk_full",
                details={"part": "disk"},
            )
        if _unwritable(number, text):
            return Unavailable(
                f"cannot write the working clone under {self.clones_dir}: {said[:200]}; "
                "make STAGEFLOW_DATA_DIR writable for the user Stageflow runs as; nothing was "
                "committed",
                code="disk_unwritable",
                details={"part": "disk"},
            )
        if isinstance(exc, git.GitCommandError | GitFailed):
            return Unavailable(
                f"git failed in the working clone {workdir}: {said[:300]}; "
                "nothing was committed — if it keeps failing, stop Stageflow and delete "
                f"{self.clones_dir} (it only caches the remote)",
                code="clone_unusable",
                details={"part": "disk"},
            )
        return exc


def _full(number: int | None, text: str) -> bool:
    return number in (errno.ENOSPC, errno.EDQUOT) or any(
        sign in text for sign in ("No space left on device", "Disk quota exceeded")
    )


def _unwritable(number: int | None, text: str) -> bool:
    return number in (errno.EROFS, errno.EACCES, errno.EPERM) or "Read-only file system" in text
