"""Read ``stageflow.yaml`` with ruamel.yaml so that every validation error can name its line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from stageflow.domain.errors import PipelineError
from stageflow.domain.pipeline import KeyPath, Pipeline, parse_pipeline


def load_pipeline(text: str, source: str = "stageflow.yaml") -> Pipeline:
    """Parse the text of ``stageflow.yaml`` into a validated Pipeline."""
    # The round-trip loader keeps the position of every key and item (``.lc``); it is also safe:
    # unknown tags become tagged values, never Python objects.
    yaml = YAML(typ="rt")
    try:
        document = yaml.load(text)
    except MarkedYAMLError as error:
        raise _syntax_error(error, source) from None
    except YAMLError as error:
        raise PipelineError(
            f"{source}: is not valid YAML: {' '.join(str(error).split())}; fix the YAML syntax",
            details={"path": "", "line": None},
        ) from None

    def line_of(path: KeyPath) -> int | None:
        return _line_of(document, path)

    return parse_pipeline(_plain(document), line_of=line_of, source=source)


def _syntax_error(error: MarkedYAMLError, source: str) -> PipelineError:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = error.problem or error.context or "the YAML cannot be read"
    where = f"{source} line {line}" if line is not None else source
    if mark is not None:
        where += f" column {mark.column + 1}"
    context = ""
    if error.context and error.problem and problem.startswith("but "):
        # ruamel splits "expected X but found Y" into context and problem.
        problem = f"{error.context} {problem}"
    elif error.context and error.problem and error.context_mark is not None:
        context = f" ({error.context} that starts on line {error.context_mark.line + 1})"
    if isinstance(error, DuplicateKeyError):
        fix = "keep only one of the two keys"
    else:
        fix = (
            "fix the indentation, quoting or brackets there "
            "(values with ': ' or ' #' in them need quotes)"
        )
    return PipelineError(
        f"{where}: YAML syntax error: {problem}{context}; {fix}",
        details={"path": "", "line": line, "problem": problem},
    )


def _line_of(node: Any, path: KeyPath) -> int | None:
    """Return the 1-based line of ``path``, or of the deepest part of it that exists."""
    line: int | None = _own_line(node)
    for part in path:
        try:
            if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
                position = node.lc.key(part)
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                position = node.lc.item(part)
            else:
                return line
        except (KeyError, IndexError, TypeError):
            # Keys that came in through a merge (``<<: *base``) have no position of their own.
            return line
        if position is not None and position[0] is not None:
            line = position[0] + 1
        node = node[part]
    return line


def _own_line(node: Any) -> int | None:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return None
    return int(lc.line) + 1


def _plain(value: Any) -> object:
    """Turn ruamel's round-trip containers and scalars into plain Python values."""
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value
