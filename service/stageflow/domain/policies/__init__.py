"""Manifest policies (issue #17): checks on what a stage renders, before it is committed.

``model`` holds the values, ``config`` reads them from ``stageflow.yaml``, ``builtin`` and
``admission`` check one stage's rendered objects, ``parity`` compares two stages' renders.
"""

from stageflow.domain.policies.config import parse_policy_settings
from stageflow.domain.policies.model import (
    ENFORCE,
    WARN,
    ParitySpec,
    PolicyError,
    PolicySettings,
    PolicySpec,
    PolicyViolation,
    Violation,
    object_id,
)

__all__ = [
    "ENFORCE",
    "WARN",
    "ParitySpec",
    "PolicyError",
    "PolicySettings",
    "PolicySpec",
    "PolicyViolation",
    "Violation",
    "object_id",
    "parse_policy_settings",
]
