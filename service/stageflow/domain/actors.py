"""The actors Stageflow itself writes into audit entries and commit trailers.

A token owned by one of these names would make its holder's changes indistinguishable from the
service's own (a rollback, a settled promotion, a signed Flux event), so no token may have one.
"""

from __future__ import annotations

from typing import Final

AUTOMATION: Final = "stageflow"  # automatic rollbacks, settling and re-evaluating promotions
FLUX: Final = "flux"  # events from Flux's generic-hmac provider (no token: a signature)
PREVIEW: Final = "preview"  # the dry run of a promotion (rendered, never committed)
CLI: Final = "cli"  # tokens made with `stageflow token create` (the audit entry's actor)
SYSTEM_ACTORS: Final = (AUTOMATION, FLUX, PREVIEW, CLI)


def is_system_actor(name: str) -> bool:
    """True when ``name`` is (in any letter case) a name the service writes as its own actor."""
    return name.casefold() in SYSTEM_ACTORS
