"""The typed state a query carries through the stages (:mod:`kgrag.query.stages`).

:class:`Query` is what the user asks; :class:`QueryState` is what the stages know
about it so far.  Each stage reads the fields it needs and fills its own; every
stage records what it computed under ``trace`` so the answer can show each score it
rests on.  Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

RERANK_MODES = ("causal", "pagerank", "none")


@dataclass
class Query:
    """One query: images and/or a question and/or findings text, with per-query overrides."""

    images: list[str] = field(default_factory=list)
    question: str | None = None
    findings: str | None = None
    k: int | None = None
    n: int | None = None
    alpha: float | None = None
    rerank: str | None = None
    modality: str | None = None
    id: str | None = None


@dataclass(slots=True)
class EvidenceSentence:
    """A sentence of a retrieved report, tagged with its section and the concept it mentions."""

    text: str
    section: str | None = None
    concept: str | None = None
    assertion: str | None = None


@dataclass
class Hit:
    """One retrieved study, with every score it collected on the way."""

    id: str
    similarity: dict[str, float | None]  # image_text, image_image, text_text, fused
    score: float | None = None  # the final ranking score of the rerank that ran
    causal_loglik: float | None = None
    claims: list[dict[str, Any]] = field(default_factory=list)  # [{concept, assertion, probability}]
    pagerank: float | None = None
    reward: float | None = None
    sentences: list[EvidenceSentence] = field(default_factory=list)

    @property
    def fused(self) -> float:
        return float(self.similarity["fused"] or 0.0)


@dataclass
class QueryState:
    """What the stages know about one query."""

    query: Query
    k: int
    n: int
    alpha: float
    rerank: str
    images: list[np.ndarray] = field(default_factory=list)
    q_image: np.ndarray | None = None  # query image embedding (shared space), or None
    q_text: np.ndarray | None = None  # query text embedding, or None
    modality: str | None = None
    image_findings: list[dict[str, float]] = field(default_factory=list)  # [{concept, probability}], sorted
    observed: dict[str, float] = field(default_factory=dict)  # V_I: concept -> probability it is present
    question_concepts: list[str] = field(default_factory=list)
    graph_calls: Any = None  # the query's GraphPipeline (owned and closed by the query pipeline)
    graph: dict[str, Any] = field(default_factory=dict)  # name -> Pending answer of a graph call (or None)
    candidates: list[Hit] = field(default_factory=list)  # ranked, best first
    definitions: list[dict[str, str]] = field(default_factory=list)
    diagnoses: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str | None:
        return self.query.question

    @property
    def findings_text(self) -> str | None:
        return self.query.findings

    @property
    def evidence(self) -> list[Hit]:
        """The top-``k`` candidates: what the answer cites."""
        return self.candidates[: self.k]

    def graph_result(self, key: str, default: Any) -> Any:
        """The answer of a graph call sent by :class:`~kgrag.query.stages.SendGraphCalls`
        (waiting for it), or ``default`` when none was made."""
        fut = self.graph.get(key)
        return default if fut is None else fut.result()
