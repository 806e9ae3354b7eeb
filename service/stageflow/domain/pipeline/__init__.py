"""The pipeline: ``stageflow.yaml`` as typed values, and the strict validation that produces them.

``model`` holds the values (apps, stages, gates, freeze windows), ``parsing`` the validation that
builds them from the loaded YAML, ``reader`` how that validation walks the document and words its
errors, ``durations`` and ``cron`` the small languages the file uses. Import from here.
"""

from __future__ import annotations

from stageflow.domain.flags.model import LIFECYCLES
from stageflow.domain.pipeline.durations import format_duration, parse_duration
from stageflow.domain.pipeline.model import (
    App,
    FreezeWindow,
    Gates,
    MetricGate,
    Pipeline,
    Stage,
)
from stageflow.domain.pipeline.parsing import API_VERSION, parse_pipeline
from stageflow.domain.pipeline.reader import KeyPath

__all__ = [
    "API_VERSION",
    "LIFECYCLES",
    "App",
    "FreezeWindow",
    "Gates",
    "KeyPath",
    "MetricGate",
    "Pipeline",
    "Stage",
    "format_duration",
    "parse_duration",
    "parse_pipeline",
]
