"""Feature flags: flagd flag documents as typed values, their checks and their layout.

``model`` holds the values and their changes, ``parse`` reads a document's text, ``check`` finds
what flagd would misread that its JSON schema lets through, and ``layout`` writes the fixed layout
where toggling a flag is a one-line diff. The JSON-schema validation itself is an adapter concern
(``adapters/flagd_schema.py``).
"""

from stageflow.domain.flags.check import check_flag_document
from stageflow.domain.flags.layout import RenderedDocument, render_flag_document
from stageflow.domain.flags.model import (
    DEFAULT_LIFECYCLE,
    DISABLED,
    ENABLED,
    FLAG_KEY_RE,
    FLAGD_SCHEMA_URL,
    LIFECYCLES,
    STATES,
    Flag,
    FlagDocument,
    FlagKind,
    new_flag,
    set_enabled,
    state_word,
    with_changes,
)
from stageflow.domain.flags.parse import parse_flag_document

__all__ = [
    "DEFAULT_LIFECYCLE",
    "DISABLED",
    "ENABLED",
    "FLAGD_SCHEMA_URL",
    "FLAG_KEY_RE",
    "LIFECYCLES",
    "STATES",
    "Flag",
    "FlagDocument",
    "FlagKind",
    "RenderedDocument",
    "check_flag_document",
    "new_flag",
    "parse_flag_document",
    "render_flag_document",
    "set_enabled",
    "state_word",
    "with_changes",
]
