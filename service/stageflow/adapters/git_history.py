"""The `History` port: Stageflow's commits on the tracked branch, read from the working clone."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import git

from stageflow.adapters.git import GitPythonRepo
from stageflow.domain.errors import Unavailable
from stageflow.services.ports import CommitFacts

_FORMAT = "--format=%H%x1f%ct%x1f%(trailers:only,unfold)%x1e"


def _trailers(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Stageflow-"):
            found[key] = value.strip()
    return found


class GitHistory:
    """Reads commits of the clone of a `GitPythonRepo` (one `git log` per call)."""

    def __init__(self, repo: GitPythonRepo) -> None:
        self.repo = repo

    def stageflow_commits(self, since: str | None, head: str, *, limit: int) -> list[CommitFacts]:
        """Return the commits with a Stageflow-Change trailer after ``since``, oldest first."""
        args = [f"-{limit}", "--reverse", "--fixed-strings", "--grep=Stageflow-Change: ", _FORMAT]
        try:
            out = self.repo.repo.git.log(*args, f"{since}..{head}" if since else head)
        except git.GitCommandError as exc:
            if since is None:
                raise Unavailable(f"cannot read the history of {head}: {exc}") from exc
            # `since` is unknown to this clone (a new clone, a rewritten branch): look back.
            return self.stageflow_commits(None, head, limit=limit)
        commits = []
        for record in out.split("\x1e"):
            fields = record.strip("\n").split("\x1f")
            if len(fields) != 3:
                continue
            sha, seconds, trailers = fields
            commits.append(
                CommitFacts(
                    revision=sha,
                    at=datetime.fromtimestamp(int(seconds), UTC),
                    trailers=_trailers(trailers),
                )
            )
        return commits

    def trailers_of(self, revision: str) -> Mapping[str, str]:
        out = self.repo.repo.git.log("-1", "--format=%(trailers:only,unfold)", revision)
        return _trailers(out)

    def message_of(self, revision: str) -> str:
        try:
            return str(self.repo.repo.git.log("-1", "--format=%B", revision))
        except git.GitCommandError as exc:
            raise Unavailable(f"cannot read commit {revision[:12]}: {exc.stderr}") from exc
