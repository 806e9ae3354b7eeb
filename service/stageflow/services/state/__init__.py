"""Read the desired state from Git: the pipeline, flags and images of each stage, at a revision.

``reading`` reads the files (at a revision, or in a write's working tree) and keeps their parses;
``views`` turns them into the plain data the API, the pages and the CLI answer with. Import from
here: every name importers use is re-exported.
"""

from __future__ import annotations

from stageflow.services.state.reading import (
    FLAGS_FILE,
    KUSTOMIZATION_FILE,
    PIPELINE_FILE,
    FileProblem,
    Snapshot,
    content_at,
    empty_flag_document,
    file_notes,
    flags_in,
    flags_path,
    git_blob_id,
    head_problems,
    kustomization_path,
    outage_notes,
    parsed,
    pipeline_in,
    remember_flags,
    snapshot,
)
from stageflow.services.state.views import (
    AppSummary,
    PipelineOverview,
    Repository,
    app_view,
    apps_view,
    first_stage,
    flag_matrix,
    image_view,
    last_stage,
    matrix_within_stages,
    pipeline_view,
    stage_flags_document,
    stages_with_flag,
    webhook_stage,
    within_stages,
)

__all__ = [
    "FLAGS_FILE",
    "KUSTOMIZATION_FILE",
    "PIPELINE_FILE",
    "AppSummary",
    "FileProblem",
    "PipelineOverview",
    "Repository",
    "Snapshot",
    "app_view",
    "apps_view",
    "content_at",
    "empty_flag_document",
    "file_notes",
    "first_stage",
    "flag_matrix",
    "flags_in",
    "flags_path",
    "git_blob_id",
    "head_problems",
    "image_view",
    "kustomization_path",
    "last_stage",
    "matrix_within_stages",
    "outage_notes",
    "parsed",
    "pipeline_in",
    "pipeline_view",
    "remember_flags",
    "snapshot",
    "stage_flags_document",
    "stages_with_flag",
    "webhook_stage",
    "within_stages",
]
