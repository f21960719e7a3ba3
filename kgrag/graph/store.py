"""The domain-level graph store protocol every backend implements.

Callers never send Cypher; they call these operations.  Every backend runs the
statements in ``kgrag/cypher/`` with values passed only as parameters.

Causal model (DESIGN.md, "Causal model"): ``CAUSES`` edges point image finding
-> finding -> diagnosis.  For observed concepts ``V_I`` with probabilities
``q_o`` and a target concept ``c``::

    strength(path) = q_o * prod(p_e for e in path)      # simple paths, 1..max_len edges,
                                                         # accepted edges only
    P(c | V_I) = 1 - (1 - leak_c) * (1 - q_c) * prod(1 - strength(path))

where ``q_c`` is c's own observed probability (0 when c is not observed) and
``leak_c`` is the node's ``leak`` property or the default leak.  A candidate
report's causal log-likelihood is the mean over the concepts it asserts of
``log P(c)`` (present) and ``log(1 - P(c))`` (absent), each clipped at
``LOG_EPS``; a report asserting nothing has ``loglik = None``.
:mod:`kgrag.causal.scoring` is the pure-Python oracle of exactly this model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kgrag.causal.scoring import LOG_EPS
from kgrag.graph.graph_pipeline import GraphPipeline
from kgrag.types import CandidateScore, CausalPath, Concept, Edge, ReportCandidate

__all__ = ["LOG_EPS", "CandidateScore", "CausalPath", "GraphStore", "ReportCandidate", "UpsertReport"]

@dataclass(slots=True)
class UpsertReport:
    written: int = 0
    skipped_locked: list[tuple[str, str]] = field(default_factory=list)
    duplicates_dropped: int = 0  # rows de-duplicated by key inside a batch (last wins)


@runtime_checkable
class GraphStore(Protocol):
    """Domain operations on the causal graph.  Implementations: FalkorDBStore, Neo4jStore.

    Every caller (ingest, kg build/audit/curate, index, query, commands) types its
    store as ``GraphStore`` and uses only these methods; ``default_leak=None`` means
    the store's own default (``KGRAG_KG__DEFAULT_LEAK``)."""

    backend: str

    # -- lifecycle -----------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create indexes / uniqueness for Concept.id, Study.id (idempotent)."""

    def close(self) -> None: ...

    def drop(self) -> None:
        """Delete every node and relationship of this graph."""

    # -- writes (batched via UNWIND; rows de-duplicated by key, last row wins) --
    def upsert_concepts(self, concepts: Iterable[Concept | Mapping[str, Any]]) -> int:
        """MERGE (:Concept:<Role> {id}) setting name, synonyms, definition, leak."""

    def upsert_studies(self, studies: Iterable[Mapping[str, Any]]) -> int:
        """Rows ``{id, split, modality, content_hash}`` -> (:Study {id}) nodes."""

    def upsert_mentions(self, mentions: Iterable[Mapping[str, Any]]) -> int:
        """Rows ``{study_id, concept, assertion, count, section, sentence}``: one
        ``(:Study)-[:ASSERTS {assertion, count, section, sentence}]->(:Concept)`` per
        (study, concept); the study-level assertion (present > uncertain > absent)."""

    def delete_mentions(self, study_ids: Sequence[str]) -> int:
        """Remove ASSERTS relationships of these studies (before re-ingesting them)."""

    def delete_studies(self, study_ids: Sequence[str]) -> int: ...

    def upsert_edges(
        self, edges: Iterable[Edge | Mapping[str, Any]], *, overwrite_locked: bool = False
    ) -> UpsertReport:
        """MERGE CAUSES edges with all Edge fields.  An existing edge with
        ``locked = true`` keeps status/review fields unless ``overwrite_locked``;
        its statistics are refreshed.  Both endpoint concepts must exist."""

    def set_status(
        self,
        src: str,
        dst: str,
        status: str,
        *,
        reviewed_by: str,
        note: str | None = None,
        locked: bool = True,
        reviewed_at: str | None = None,
    ) -> dict[str, Any]:
        """Set an edge's curation fields; raises GraphStoreError if the edge is absent."""

    def delete_edges(self, keys: Sequence[tuple[str, str]]) -> int: ...

    # -- reads ---------------------------------------------------------------
    def concepts(self) -> list[dict[str, Any]]: ...

    def edges(self, status: str | None = None) -> list[dict[str, Any]]:
        """All CAUSES edges (every Edge field plus src_role/dst_role)."""

    def study_ids(self) -> set[str]: ...

    def counts(self) -> dict[str, int]:
        """{"concepts", "studies", "asserts", "edges", "accepted", "proposed", "rejected"}."""

    # -- causal scoring (accepted edges only) ---------------------------------
    def causal_scores(
        self,
        candidates: Sequence[ReportCandidate],
        observed: Mapping[str, float],
        *,
        max_len: int = 3,
        default_leak: float | None = None,
    ) -> list[CandidateScore]:
        """Scores for all candidates, in input order: one query gives P(c | V_I) for every
        concept the candidates assert; each report's mean log-likelihood follows from it
        (:func:`kgrag.causal.scoring.score_candidates`)."""

    def concept_probabilities(
        self,
        observed: Mapping[str, float],
        targets: Sequence[str],
        *,
        max_len: int = 3,
        default_leak: float | None = None,
    ) -> dict[str, float]:
        """P(target | observed) for each target."""

    def counterfactuals(
        self,
        observed: Mapping[str, float],
        targets: Sequence[str],
        removals: Sequence[str],
        *,
        max_len: int = 3,
        default_leak: float | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """For each target, [{"remove": o, "probability": P(target | observed without o)}]
        for every o in ``removals`` (in that order), all scenarios in one query."""

    def paths(
        self,
        observed: Mapping[str, float],
        targets: Sequence[str],
        *,
        max_len: int = 3,
        limit: int = 5,
    ) -> dict[str, list[CausalPath]]:
        """Strongest accepted paths from observed concepts to each target."""

    def pipeline(self) -> GraphPipeline:
        """A :class:`~kgrag.graph.graph_pipeline.GraphPipeline`: ``concept_probabilities``,
        ``counterfactuals`` and ``paths`` queued (each returns a ``Pending``), sent
        together with ``send(executor=None)``, answered by ``Pending.result()``; a
        context manager that drops unread replies on exit."""

    # -- whole-graph -----------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """{"concepts": [...], "edges": [...]} -- JSON-serialisable."""

    def import_(self, data: Mapping[str, Any]) -> None: ...

    def set_meta(self, key: str, value: Any) -> None:
        """Keep a JSON-serialisable value with the graph (e.g. the build parameters)."""

    def get_meta(self, key: str) -> Any:
        """The value :meth:`set_meta` kept under ``key``, or None."""

    def status(self) -> dict[str, Any]:
        """Diagnostics for ``kgrag db status`` / ``kgrag doctor``: backend, reachability, counts."""

    def version(self, params: Mapping[str, Any] | None = None) -> str:
        """Hash of the accepted edge set (src, dst, p rounded) + build params."""
