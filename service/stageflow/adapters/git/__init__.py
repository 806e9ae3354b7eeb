"""The GitOps repository over GitPython: `GitPythonRepo` (the `GitRepo` port) and its parts."""

from stageflow.adapters.git.commits import GitFailed
from stageflow.adapters.git.environment import auth_env, redact_url, seed_bare_remote
from stageflow.adapters.git.repo import GitOptions, GitPythonRepo
from stageflow.adapters.git.writes import Push

__all__ = [
    "GitFailed",
    "GitOptions",
    "GitPythonRepo",
    "Push",
    "auth_env",
    "redact_url",
    "seed_bare_remote",
]
