"""Files Stageflow ships besides its code: the starter GitOps repo and the database migrations.

The repository's top-level `overlays/` and `migrations/` are the one copy people edit. A wheel
carries them inside the package as `stageflow/_data/` (pyproject's hatch `force-include`), so
an installed Stageflow finds them without a checkout; a checkout (or an editable install) finds
them at its top level.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "_data"
CHECKOUT = Path(__file__).resolve().parents[2]  # service/stageflow/resources.py -> the checkout


def shipped(name: str) -> Path:
    """The directory ``name`` (``overlays`` or ``migrations``): the wheel's copy, else the
    checkout's (an editable install or a source tree)."""
    packaged = PACKAGED / name
    return packaged if packaged.is_dir() else CHECKOUT / name
