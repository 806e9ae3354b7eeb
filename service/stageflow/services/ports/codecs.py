"""Ports that read, render and check the repository's files: kustomize, the Kustomization
document, flagd's evaluation, the manifest policies' tools."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stageflow.domain.evaluation import Evaluation, EvaluationRequest
from stageflow.domain.flags import FlagDocument
from stageflow.domain.images import ImageRef
from stageflow.domain.pipeline import Pipeline
from stageflow.domain.policies.admission import Program


class Renderer(Protocol):
    def render(self, directory: Path) -> str: ...


class KustomizationDoc(Protocol):
    def images(self) -> list[ImageRef]: ...

    def set_image(self, ref: ImageRef, *, clear_other: bool = False) -> bool: ...

    def generated_only(self, filename: str, overlay: str, base: str) -> frozenset[str] | None: ...

    def render(self) -> str: ...


class FlagEvaluator(Protocol):
    """The flags of one committed flagd document, loaded into the reference flagd evaluator."""

    def flag_keys(self) -> Sequence[str]: ...

    def metadata(self) -> Mapping[str, Any]: ...

    def needs_targeting_key(self, key: str) -> bool: ...

    # True when no context can change the flag's answer (disabled, or no targeting rules)
    def is_static(self, key: str) -> bool: ...

    def evaluate(self, key: str, request: EvaluationRequest) -> Evaluation: ...


class PolicyTools(Protocol):
    """The libraries behind manifest policies: YAML streams, Kubernetes schemas, CEL."""

    def parse_manifests(self, text: str) -> list[dict[str, Any]]: ...

    def compile_cel(self, expression: str) -> Program:
        """Compile a CEL expression; ValueError says what does not parse."""
        ...

    def schema_findings(
        self, objects: Sequence[Mapping[str, Any]], version: str, strict: bool
    ) -> tuple[list[tuple[int, str]], list[str]]:
        """Check objects against the schemas: (index, problem) pairs, and unknown kinds."""
        ...


@dataclass(frozen=True)
class Codecs:
    """Parsers and validators that need third-party libraries (YAML, JSON Schema)."""

    load_pipeline: Callable[[str], Pipeline]
    parse_kustomization: Callable[[str, str], KustomizationDoc]
    # validate_flags(doc, only): check the named flags (None: all) and the document-level parts
    validate_flags: Callable[[FlagDocument, Collection[str] | None], None]
    # flag_evaluator(flags.json bytes): the document loaded into the reference flagd evaluator
    flag_evaluator: Callable[[bytes], FlagEvaluator] | None = None
    # trial_evaluate(doc, key): evaluate the flag's targeting as flagd would with a few contexts;
    # raises FlagDocumentError when flagd fails or answers something that is not a variant
    trial_evaluate: Callable[[FlagDocument, str], None] | None = None
    # manifest policies (issue #17); None: a pipeline that switches policies on cannot write
    policy_tools: PolicyTools | None = None
