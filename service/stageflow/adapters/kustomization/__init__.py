"""An overlay's ``kustomization.yaml``, read and edited without disturbing what people wrote.

``document`` holds ``KustomizationFile``; ``images`` the rules for setting an image, ``text`` the
line-level carry-over of edits, ``comments`` the moving of ruamel's trailing comments, and
``roundtrip`` the YAML instances and value styling they share. Import from here.
"""

from __future__ import annotations

from stageflow.adapters.kustomization.document import KustomizationFile

__all__ = ["KustomizationFile"]
