"""The GitOps repository: moved to the `stageflow.adapters.git` package (its parts each in a
module of their own); these names stay importable from here."""

from stageflow.adapters.git import (
    GitFailed,
    GitOptions,
    GitPythonRepo,
    Push,
    auth_env,
    redact_url,
    seed_bare_remote,
)

__all__ = [
    "GitFailed",
    "GitOptions",
    "GitPythonRepo",
    "Push",
    "auth_env",
    "redact_url",
    "seed_bare_remote",
]
