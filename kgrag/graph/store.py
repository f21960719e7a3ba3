"""The domain-level graph store protocol every backend implements.

Callers never send Cypher; they call these operations.  Every backend runs the
statements in ``kgrag/cypher/`` with values passed only as parameters.

Causal model (DESIGN.md, "Causal model"; docs/causal.md).  ``CAUSES`` edges point
the way a reader reasons, image finding -> finding -> diagnosis (RadGraph's
``suggestive_of``), along MCRAG's factorization

    pG(V_D, V_F | V_I) = p(V_F | V_I) * p(V_D | V_F).

Only ``accepted`` edges take part.  Every concept v is binary with a noisy-OR CPD

    P(v = 1 | pa) = 1 - (1 - leak_v) * prod_u (1 - p_uv * s_u)

over its accepted parents u, ``leak_v`` the node's ``leak`` (the store's default
leak when unset); a root's leak is its base rate.  V_I maps concepts to
probabilities q: the image head's calibrated output for every concept it can see,
or, for a text query, the findings the text states (present 1, absent 0).  V_I may
hold any concept, of any role.

- ``causal_scores`` -- the rerank term, log pG of each candidate report, one hop
  (``score_reports.cypher``, one statement for all N candidates): one term per
  concept v the report asserts present or absent; v in V_I: log q_v or
  log(1 - q_v); any other v: the log of its CPD above (or of 1 minus it), with
  s_u = the report's own assertion of u where stated, else q_u from V_I (the
  expected noisy-OR), else u's exact prior marginal.  Probabilities are clipped at
  ``LOG_EPS`` before the log; the score is the sum of the terms or their mean
  (``normalize``); a report that asserts nothing scores None.
- ``posteriors`` -- P(c | V_I) for every concept: the concepts of V_I become roots
  with P = q (their incoming edges cut: soft evidence entering as priors), then
  exact inference (variable elimination on a junction tree) on the accepted DAG
  fetched by one call (``get_causal_graph.cypher``).
- ``interventions`` -- do(F = 0): graph surgery (F's incoming edges cut, F clamped
  to 0) on top of V_I, then the same exact inference.  Removing F from V_I is a
  different question ("without the evidence F"); only this is a do().
- ``paths`` -- the strongest accepted paths from V_I to a target, strength
  q_o * prod p; for explanations only (path strengths combined by noisy-OR would
  double-count shared edges).

:mod:`kgrag.causal.likelihood` (pG), :mod:`kgrag.causal.inference` (posteriors and
interventions) and :mod:`kgrag.causal.scoring` (paths) are the pure-Python
references; the contract tests hold every backend to them at 1e-9.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kgrag.causal.likelihood import LOG_EPS
from kgrag.causal.network import CausalGraph
from kgrag.graph.graph_pipeline import GraphPipeline
from kgrag.types import CandidateScore, CausalPath, Concept, Edge, ReportCandidate

__all__ = ["LOG_EPS", "CandidateScore", "CausalGraph", "CausalPath", "GraphStore", "ReportCandidate", "UpsertReport"]

@dataclass(slots=True)
class UpsertReport:
    written: int = 0
    skipped_locked: list[tuple[str, str]] = field(default_factory=list)
    duplicates_dropped: int = 0  # rows de-duplicated by key inside a batch (last wins)


@runtime_checkable
class GraphStore(Protocol):
    """Domain operations on the causal graph.  Implementations: FalkorDBStore, Neo4jStore.

    Every caller (ingest, kg build/audit/curate, index, query, commands) types its
    store as ``GraphStore`` and uses only these methods.  Concepts without a ``leak``
    take the store's default (``KGRAG_KG__DEFAULT_LEAK``)."""

    backend: str

    # -- lifecycle -----------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create indexes / uniqueness for Concept.id, Study.id (idempotent)."""

    def close(self) -> None: ...

    def compact(self) -> bool:
        """Compact the engine's storage after a big write (the embedded FalkorDB rewrites
        its AOF, so the next start loads a snapshot); True when it started."""

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

    def apply_reviews(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Curation decisions for many edges in one transaction (all or none); rows
        ``{src, dst, status, reviewed_by, reviewed_at, note, locked, p}``, each key once;
        a non-null ``p`` is a reviewer's strength (source becomes ``human``)."""

    def delete_edges(self, keys: Sequence[tuple[str, str]]) -> int: ...

    # -- reads ---------------------------------------------------------------
    def concepts(self) -> list[dict[str, Any]]: ...

    def edges(self, status: str | None = None) -> list[dict[str, Any]]:
        """All CAUSES edges (every Edge field plus src_role/dst_role)."""

    def study_ids(self) -> set[str]: ...

    def study_hashes(self) -> dict[str, str | None]:
        """Study id -> content hash written last by ingest (None while a write is in progress)."""

    def counts(self) -> dict[str, int]:
        """{"concepts", "studies", "asserts", "edges", "accepted", "proposed", "rejected"}."""

    # -- the causal model (accepted edges only) ---------------------------------
    def causal_graph(self) -> CausalGraph:
        """The accepted edges and every concept's leak, in one call (the input of exact inference)."""

    def causal_scores(
        self,
        candidates: Sequence[ReportCandidate],
        observed: Mapping[str, float],
        *,
        graph: CausalGraph | None = None,
        normalize: str = "mean",
    ) -> list[CandidateScore]:
        """log pG of every candidate, in input order, from one statement.  ``loglik`` is the
        sum or mean of the terms; ``per_concept`` gives each claim's probability and its
        term (``"image"``: q from V_I, ``"cpd"``: the noisy-OR CPD).  The prior marginals come
        from ``graph`` (fetched with :meth:`causal_graph` when None)."""

    def posteriors(self, observed: Mapping[str, float], targets: Sequence[str] | None = None) -> dict[str, float]:
        """Exact P(target | V_I) (every concept of the graph when ``targets`` is None)."""

    def interventions(
        self,
        observed: Mapping[str, float],
        do: Sequence[Mapping[str, int]],
        targets: Sequence[str] | None = None,
    ) -> list[dict[str, float]]:
        """For each do-set (e.g. ``{"lung_opacity": 0}``): exact P(target | do(...), V_I), in order."""

    def paths(
        self,
        observed: Mapping[str, float],
        targets: Sequence[str],
        *,
        max_len: int = 3,
        limit: int = 5,
    ) -> dict[str, list[CausalPath]]:
        """Strongest accepted paths from observed concepts to each target (explanations)."""

    def pipeline(self) -> GraphPipeline:
        """A :class:`~kgrag.graph.graph_pipeline.GraphPipeline`: ``causal_graph``, ``posteriors``,
        ``interventions``, ``causal_scores`` and ``paths`` queued (each returns a ``Pending``),
        sent together with ``send(executor=None)``, answered by ``Pending.result()``; a
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
