"""The round-trip YAML instances, and how YAML values and errors are read and written."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from stageflow.domain.errors import Invalid

_STR_TAG = "tag:yaml.org,2002:str"
# kustomize reads YAML with go-yaml, which still treats yes/no/on/off as booleans (YAML 1.1), so a
# value is written plain only when both YAML versions read it as a string.
_RESOLVERS = (VersionedResolver(version=(1, 2)), VersionedResolver(version=(1, 1)))


@dataclass(frozen=True)
class Style:
    """How a file indents: ruamel's ``YAML.indent(mapping=, sequence=, offset=)``."""

    mapping: int = 2
    sequence: int = 4
    offset: int = 2


DEFAULT_STYLE = Style()
_local = threading.local()


def round_trip(style: Style = DEFAULT_STYLE) -> YAML:
    """Return this thread's round-trip YAML instance for ``style``, configured once."""
    # A YAML instance keeps its reader, scanner and emitter between calls, so it must not be
    # shared between threads; one per thread and style still avoids building one per request.
    instances: dict[Style, YAML] | None = getattr(_local, "instances", None)
    if instances is None:
        instances = {}
        _local.instances = instances
    yaml = instances.get(style)
    if yaml is None:
        yaml = YAML(typ="rt")
        yaml.preserve_quotes = True
        # Never fold a long line that someone wrote on one line.
        yaml.width = 1 << 20
        yaml.indent(mapping=style.mapping, sequence=style.sequence, offset=style.offset)
        instances[style] = yaml
    return yaml


def _reads_as_string(text: str) -> bool:
    """Say whether both YAML 1.1 and 1.2 read ``text`` unquoted as a string."""
    return all(str(r.resolve(ScalarNode, text, (True, False))) == _STR_TAG for r in _RESOLVERS)


def styled_scalar(value: str, like: object) -> str:
    """Return ``value`` styled like the value it replaces, quoted when YAML would misread it."""
    styled: str
    if isinstance(like, SingleQuotedScalarString):
        styled = SingleQuotedScalarString(value)
    elif isinstance(like, DoubleQuotedScalarString) or not _reads_as_string(value):
        styled = DoubleQuotedScalarString(value)
    else:
        styled = value
    return styled


def canonical(node: Any) -> Any:
    """Return ``node`` as plain values that compare equal only for the same YAML content."""
    if isinstance(node, dict):
        return ("map", [(canonical(k), canonical(v)) for k, v in node.items()])
    if isinstance(node, list):
        return ("seq", [canonical(v) for v in node])
    for kind in (str, bool, int, float):
        if isinstance(node, kind):
            return (kind.__name__, kind(node))
    return (type(node).__name__, node)


def kind_of(node: Any) -> str:
    """Name a parsed YAML node that is not a mapping, for a message."""
    return "list" if isinstance(node, list) else "single value"


def line_of(container: Any, key: Any) -> int | None:
    """Return the 1-based line of ``container[key]`` in the parsed text, when known."""
    try:
        if isinstance(container, CommentedSeq):
            return int(container.lc.item(key)[0]) + 1
        return int(container.lc.key(key)[0]) + 1
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def syntax_error(path: str, text: str, exc: YAMLError) -> Invalid:
    """Turn a YAML parse error into ``Invalid`` naming ``path``, the line and the column."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    elif isinstance(exc, ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    else:
        line = column = None
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    where = f" at line {line}, column {column}" if line is not None else ""
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem = f"{context} (line {context_mark.line + 1}): {problem}"
    return Invalid(
        f"{path} is not valid YAML: {problem}{where}. Fix the file and try again.",
        code="invalid_kustomization",
        details={"path": path, "line": line, "column": column},
    )
