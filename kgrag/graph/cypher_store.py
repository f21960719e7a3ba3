"""Shared implementation of :class:`~kgrag.graph.store.GraphStore` over the Cypher catalog.

Backends provide ``_execute(name, text, params) -> list[dict]``; everything else
(batching, de-duplication, the two-step edge upsert, the causal model, versioning) lives
here once, so FalkorDB and Neo4j run the same statements.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from kgrag import cypher
from kgrag.causal import inference, likelihood
from kgrag.causal.network import CausalGraph
from kgrag.errors import GraphStoreError, InputError
from kgrag.graph.graph_pipeline import GraphPipeline, _Plan
from kgrag.graph.rows import EDGE_FIELDS, as_dict, check_id, chunks, dedupe, edge_row
from kgrag.graph.store import UpsertReport
from kgrag.types import (
    ASSERTIONS,
    EDGE_STATUSES,
    ROLES,
    CandidateScore,
    CausalPath,
    Concept,
    Edge,
    ReportCandidate,
)

log = logging.getLogger(__name__)

class CypherGraphStore:
    """Base class; subclasses set ``backend``, ``dialect`` and implement ``_execute``."""

    backend = "cypher"
    dialect = "falkordb"

    def __init__(self, *, batch_size: int = 1000, default_leak: float = 0.01) -> None:
        self.batch_size = batch_size
        self.default_leak = default_leak

    # -- backend hooks -----------------------------------------------------------
    def _execute(self, name: str, text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _send(self, calls: Sequence[tuple[str, str, dict[str, Any]]],
              executor: Executor | None) -> list[Callable[[], list[dict[str, Any]]]]:
        """Start read-only statements now, answered later in order (see :class:`GraphPipeline`).

        This default runs them on ``executor`` (one worker keeps their order), or when
        there is none, each at its first read.  Backends whose protocol pipelines
        commands on a connection override it.
        """
        if executor is not None:
            return [executor.submit(self._execute, *c).result for c in calls]
        return [functools.partial(self._execute, *c) for c in calls]  # Pending keeps the answer

    def _prepare(self, name: str, params: Mapping[str, Any] | None = None, *,
                 label: str | None = None) -> tuple[str, str, dict[str, Any]]:
        """(file path, text, params) of a catalog statement, its parameters checked."""
        st = cypher.load(name, self.dialect)
        params = dict(params or {})
        missing = st.params - params.keys()
        if missing:
            raise GraphStoreError(f"statement {name} called without parameters {sorted(missing)}")
        text = st.with_label(label) if label else st.body
        return st.path, text, {k: params[k] for k in st.params}

    def _run(self, name: str, params: Mapping[str, Any] | None = None, *, label: str | None = None) -> list[dict[str, Any]]:
        return self._execute(*self._prepare(name, params, label=label))

    def _call(self, plan: _Plan) -> Any:
        return plan.value if plan.name is None else plan.finish(self._run(plan.name, plan.params))

    def pipeline(self) -> GraphPipeline:
        """Queue read-only graph calls, send them together, read each answer when needed."""
        return GraphPipeline(self)

    def _run_batched(self, name: str, rows: Sequence[Any], extra: Mapping[str, Any] | None = None, *, label: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in chunks(rows, self.batch_size):
            out += self._run(name, {"rows": list(chunk), **(extra or {})}, label=label)
        return out

    # -- lifecycle -----------------------------------------------------------------
    def ensure_schema(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def compact(self) -> bool:
        """Let the engine compact its storage after a big write (a no-op here)."""
        return False

    def drop(self) -> None:
        self._run("delete_all")

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------
    def upsert_concepts(self, concepts: Iterable[Concept | Mapping[str, Any]]) -> int:
        rows, dropped = dedupe((as_dict(c) for c in concepts), key=lambda r: r["id"])
        if dropped:
            log.info("upsert_concepts: %d duplicate ids in the batch (last row wins)", dropped)
        by_role: dict[str, list[dict]] = {}
        for r in rows:
            if r.get("role") not in ROLES:
                raise InputError(f"concept {r.get('id')!r}: role {r.get('role')!r} is not one of {ROLES}",
                                 fix="fix the concept's role in the concept file")
            by_role.setdefault(r["role"], []).append(
                {
                    "id": check_id("concept", r.get("id")),
                    "role": r["role"],
                    "name": r.get("name") or r["id"],
                    "synonyms": list(r.get("synonyms") or []),
                    "definition": r.get("definition") or "",
                    "leak": r.get("leak"),
                }
            )
        n = 0
        for role, rs in by_role.items():
            for res in self._run_batched("merge_concepts", rs, label=role):
                n += int(res.get("written") or 0)
        return n

    def upsert_studies(self, studies: Iterable[Mapping[str, Any]]) -> int:
        rows, dropped = dedupe(
            ({"id": check_id("study", s.get("id")), "split": s.get("split"), "modality": s.get("modality"),
              "content_hash": s.get("content_hash")} for s in studies),
            key=lambda r: r["id"],
        )
        if dropped:
            log.info("upsert_studies: %d duplicate ids in the batch (last row wins)", dropped)
        return sum(int(r.get("written") or 0) for r in self._run_batched("merge_studies", rows))

    def upsert_mentions(self, mentions: Iterable[Mapping[str, Any]]) -> int:
        rows = []
        for m in mentions:
            if m.get("assertion") not in ASSERTIONS:
                raise InputError(f"mention {m.get('study_id')}/{m.get('concept')}: bad assertion {m.get('assertion')!r}",
                                 fix=f"use one of {ASSERTIONS}")
            rows.append({"study_id": check_id("study", m.get("study_id")), "concept": check_id("concept", m.get("concept")),
                         "assertion": m["assertion"], "count": int(m.get("count") or 1),
                         "section": m.get("section"), "sentence": m.get("sentence")})
        rows, dropped = dedupe(rows, key=lambda r: (r["study_id"], r["concept"]))
        if dropped:
            log.info("upsert_mentions: %d duplicate (study, concept) rows (last row wins)", dropped)
        return sum(int(r.get("written") or 0) for r in self._run_batched("merge_mentions", rows))

    def delete_mentions(self, study_ids: Sequence[str]) -> int:
        n = 0
        ids = [str(s) for s in study_ids]
        for chunk in chunks(ids, self.batch_size):
            res = self._run("delete_mentions", {"ids": list(chunk)})
            n += int(res[0]["deleted"]) if res else 0
        return n

    def delete_studies(self, study_ids: Sequence[str]) -> int:
        ids = [str(s) for s in study_ids]
        for chunk in chunks(ids, self.batch_size):
            self._run("delete_studies", {"ids": list(chunk)})
        return len(ids)

    def upsert_edges(self, edges: Iterable[Edge | Mapping[str, Any]], *, overwrite_locked: bool = False) -> UpsertReport:
        rows, dropped = dedupe((edge_row(e) for e in edges), key=lambda r: (r["src"], r["dst"]))
        if dropped:
            log.warning("upsert_edges: %d duplicate (src, dst) rows in the batch; the last row of each key wins", dropped)
        known = {c["id"] for c in self.concepts()} if rows else set()
        missing = sorted({x for r in rows for x in (r["src"], r["dst"]) if x not in known})
        if missing:
            raise InputError(
                f"edges reference unknown concepts: {missing[:10]}",
                fix="upsert the concepts first (kgrag ingest does), or fix the edge endpoints",
            )
        rep = UpsertReport(duplicates_dropped=dropped)
        for res in self._run_batched("merge_edges", rows, {"overwrite_locked": bool(overwrite_locked)}):
            rep.written += 1
            if res.get("kept_locked"):
                rep.skipped_locked.append((res["src"], res["dst"]))
        return rep

    def set_status(self, src: str, dst: str, status: str, *, reviewed_by: str, note: str | None = None,
                   locked: bool = True, reviewed_at: str | None = None) -> dict[str, Any]:
        if status not in EDGE_STATUSES:
            raise InputError(f"status {status!r} is not one of {EDGE_STATUSES}", fix="use proposed, accepted or rejected")
        if not reviewed_by:
            raise InputError("a review needs a reviewer name", fix="pass --by NAME")
        if reviewed_at is None:
            from datetime import UTC, datetime

            reviewed_at = datetime.now(UTC).isoformat(timespec="seconds")
        res = self._run("set_edge_status", {"src": src, "dst": dst, "status": status, "reviewed_by": reviewed_by,
                                            "reviewed_at": reviewed_at, "note": note, "locked": bool(locked)})
        if not res:
            raise GraphStoreError(f"no CAUSES edge {src} -> {dst}", fix="list edges with 'kgrag kg show' or 'kgrag curate export'")
        return res[0]

    def apply_reviews(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Set status, review fields, lock and (when given) p of many edges in ONE
        statement, so one transaction: all rows land or none.  Rows are ``{src, dst,
        status, reviewed_by, reviewed_at, note, locked, p}`` (p None: unchanged); a
        (src, dst) key may appear once.  Returns the number of edges written."""
        out = []
        for r in rows:
            if r.get("status") not in EDGE_STATUSES:
                raise InputError(f"status {r.get('status')!r} is not one of {EDGE_STATUSES}",
                                 fix="use proposed, accepted or rejected")
            p = r.get("p")
            if p is not None and not 0.0 <= float(p) <= 1.0:
                raise InputError(f"edge {r.get('src')}->{r.get('dst')}: p={p!r} is not in [0, 1]", fix="use a p in [0, 1]")
            out.append({"src": check_id("concept", r.get("src")), "dst": check_id("concept", r.get("dst")),
                        "status": r["status"], "reviewed_by": r.get("reviewed_by"), "reviewed_at": r.get("reviewed_at"),
                        "note": r.get("note"), "locked": bool(r.get("locked")), "p": None if p is None else float(p)})
        keys = [(r["src"], r["dst"]) for r in out]
        if len(set(keys)) != len(keys):
            raise InputError("apply_reviews got the same edge twice", fix="give each (src, dst) once")
        if not out:
            return 0
        res = self._run("set_edge_reviews", {"rows": out})  # never split: one statement, one transaction
        return int(res[0]["applied"]) if res else 0

    def delete_edges(self, keys: Sequence[tuple[str, str]]) -> int:
        ks = [{"src": s, "dst": d} for s, d in keys]
        for chunk in chunks(ks, self.batch_size):
            self._run("delete_edges", {"keys": list(chunk)})
        return len(ks)

    # -- reads -------------------------------------------------------------------------
    def concepts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._run("get_concepts")]

    def edges(self, status: str | None = None) -> list[dict[str, Any]]:
        out = []
        for r in self._run("get_edges", {"status": status}):
            props = dict(r["props"] or {})
            row = {k: props.get(k) for k in EDGE_FIELDS}
            row.update(src=r["src"], dst=r["dst"], src_role=r["src_role"], dst_role=r["dst_role"])
            row["locked"] = bool(row.get("locked"))
            for k in ("evidence_studies", "evidence_spans"):
                row[k] = list(row.get(k) or [])
            out.append(row)
        return out

    def study_ids(self) -> set[str]:
        return {r["id"] for r in self._run("get_study_ids")}

    def study_hashes(self) -> dict[str, str | None]:
        """Study id -> the content hash its last completed ingest write recorded."""
        return {r["id"]: r["content_hash"] for r in self._run("get_study_hashes")}

    def counts(self) -> dict[str, int]:
        r = self._run("count_graph")[0]
        return {k: int(r.get(k) or 0) for k in ("concepts", "studies", "asserts", "edges", "accepted", "proposed", "rejected")}

    # -- explanations: the strongest paths ------------------------------------------------
    def _paths_plan(self, observed: Mapping[str, float], targets: Sequence[str], *, max_len: int = 3,
                    limit: int = 5) -> _Plan:
        targets = list(dict.fromkeys(targets))
        obs = [{"id": k, "q": q} for k, q in likelihood.check_observed(observed).items() if q > 0.0]
        if not targets or not obs:
            return _Plan(None, value={t: [] for t in targets})

        def group(res: list[dict[str, Any]]) -> dict[str, list[CausalPath]]:
            out: dict[str, list[CausalPath]] = {t: [] for t in targets}
            for r in res:
                out[r["target"]].append(CausalPath(list(r["nodes"]), float(r["strength"])))
            for t in out:
                out[t].sort(key=lambda p: (-p.strength, p.nodes))
                out[t] = out[t][:limit]
            return out

        return _Plan("get_paths", {"observed": obs, "targets": targets, "max_len": int(max_len)}, group)

    def paths(self, observed: Mapping[str, float], targets: Sequence[str], *, max_len: int = 3,
              limit: int = 5) -> dict[str, list[CausalPath]]:
        return self._call(self._paths_plan(observed, targets, max_len=max_len, limit=limit))

    # -- the causal model: subgraph, exact inference, interventions, pG -------------------
    def _graph_from_rows(self, rows: list[dict[str, Any]]) -> CausalGraph:
        return CausalGraph.from_rows(rows, default_leak=self.default_leak)

    def _graph_plan(self) -> _Plan:
        """get_causal_graph.cypher: the accepted edges and every leak, as a CausalGraph."""
        return _Plan("get_causal_graph", {}, self._graph_from_rows)

    def _posteriors_plan(self, observed: Mapping[str, float], targets: Sequence[str] | None = None) -> _Plan:
        """The same call as :meth:`_graph_plan`; exact inference runs on the answer."""
        observed = likelihood.check_observed(observed)
        targets = None if targets is None else list(dict.fromkeys(targets))
        return _Plan("get_causal_graph", {},
                     lambda rows: inference.posteriors(self._graph_from_rows(rows), observed, targets))

    def _interventions_plan(self, observed: Mapping[str, float], do: Sequence[Mapping[str, int]],
                            targets: Sequence[str] | None = None) -> _Plan:
        observed = likelihood.check_observed(observed)
        do = [_do_set(d) for d in do]
        targets = None if targets is None else list(dict.fromkeys(targets))
        if not do:
            return _Plan(None, value=[])
        return _Plan("get_causal_graph", {},
                     lambda rows: inference.interventions(self._graph_from_rows(rows), observed, do, targets))

    def _check_map_keys(self, keys: Iterable[str]) -> None:
        """Concept ids sent as map keys ($observed, $priors); backends with limits override."""

    def _scores_plan(self, candidates: Sequence[ReportCandidate], observed: Mapping[str, float], *,
                     graph: CausalGraph | None = None, normalize: str = "mean") -> _Plan:
        """score_reports.cypher for every candidate with a claim; the others score None.  The
        prior marginals come from ``graph`` (fetched now when None)."""
        normalize = likelihood.check_normalize(normalize)
        observed = likelihood.check_observed(observed)
        cands = list(candidates)
        claims = [likelihood.claims(c) for c in cands]
        scored = [i for i, cl in enumerate(claims) if cl]
        if not scored:
            return _Plan(None, value=[CandidateScore(c.id, None, 0, []) for c in cands])
        if graph is None:
            graph = self.causal_graph()
        concepts = sorted({c for i in scored for c, _ in claims[i] if c not in observed})  # the CPD claims
        kof = {c: k for k, c in enumerate(concepts)}
        cpd = [[kof[c] if present else -kof[c] - 1 for c, present in claims[i] if c in kof] for i in scored]
        # the prior marginals of the parents pG may fall back on (those outside V_I)
        priors = inference.prior_marginals(
            graph, sorted({u for c in concepts for u, _ in graph.parents_of(c) if u not in observed}))
        self._check_map_keys([*observed, *priors])
        params = {"concepts": concepts, "cpd": cpd,
                  "present": [[c for c, pr in claims[i] if pr] for i in scored],
                  "absent": [[c for c, pr in claims[i] if not pr] for i in scored],
                  "observed": observed, "priors": priors, "default_leak": float(self.default_leak),
                  "log_eps": likelihood.LOG_EPS, "normalize": "sum" if normalize == "lift" else normalize}

        def fold(rows: list[dict[str, Any]]) -> list[CandidateScore]:
            if [int(r["candidate"]) for r in rows] != list(range(len(scored))):
                raise GraphStoreError(f"score_reports returned {len(rows)} rows for {len(scored)} candidates",
                                      fix="check the graph engine's log; this is a kgrag bug if it repeats")
            out = [CandidateScore(c.id, None, 0, []) for c in cands]
            for i, r in zip(scored, rows, strict=True):
                cpd_p = iter(r["probabilities"])  # in the order of the candidate's claims outside V_I
                per = [{"concept": c, "assertion": "present" if pr else "absent",
                        "probability": observed[c] if c in observed else float(next(cpd_p)),
                        "term": "image" if c in observed else "cpd"} for c, pr in claims[i]]
                out[i] = CandidateScore(cands[i].id, float(r["loglik"]), int(r["n"]), per)
            if normalize == "lift":  # minus log pG(R | ∅), which depends on the report and the graph only
                out = likelihood.with_lift(out, likelihood.prior_logliks(graph, cands))
            return out

        return _Plan("score_reports", params, fold)

    def causal_graph(self) -> CausalGraph:
        return self._call(self._graph_plan())

    def posteriors(self, observed: Mapping[str, float], targets: Sequence[str] | None = None) -> dict[str, float]:
        return self._call(self._posteriors_plan(observed, targets))

    def interventions(self, observed: Mapping[str, float], do: Sequence[Mapping[str, int]],
                      targets: Sequence[str] | None = None) -> list[dict[str, float]]:
        return self._call(self._interventions_plan(observed, do, targets))

    def causal_scores(self, candidates: Sequence[ReportCandidate], observed: Mapping[str, float], *,
                      graph: CausalGraph | None = None, normalize: str = "mean") -> list[CandidateScore]:
        return self._call(self._scores_plan(candidates, observed, graph=graph, normalize=normalize))

    # -- whole graph ---------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        return {"format": "kgrag.graph.v1", "concepts": self.concepts(),
                "edges": [{k: v for k, v in e.items() if k not in ("src_role", "dst_role")} for e in self.edges()]}

    def import_(self, data: Mapping[str, Any]) -> None:
        if data.get("format") not in (None, "kgrag.graph.v1"):
            raise InputError(f"unknown graph export format {data.get('format')!r}", fix="export with this kgrag version")
        self.upsert_concepts(data.get("concepts", []))
        self.upsert_edges(data.get("edges", []), overwrite_locked=True)

    def set_meta(self, key: str, value: Any) -> None:
        """Keep a JSON-serialisable value with the graph (e.g. the build parameters)."""
        self._run("set_meta", {"key": key, "value": json.dumps(value, sort_keys=True, default=str)})

    def get_meta(self, key: str) -> Any:
        res = self._run("get_meta", {"key": key})
        return json.loads(res[0]["value"]) if res and res[0]["value"] is not None else None

    def version(self, params: Mapping[str, Any] | None = None) -> str:
        """Hash of the accepted edges and the build parameters (stored ones when None)."""
        if params is None:
            params = self.get_meta("build_params") or {}
        accepted = sorted((e["src"], e["dst"], round(float(e["p"] or 0.0), 6)) for e in self.edges("accepted"))
        blob = json.dumps({"edges": accepted, "params": dict(params or {})}, sort_keys=True, default=str)
        return "g-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _do_set(d: Mapping[str, Any]) -> dict[str, float]:
    """A do() assignment: concept -> 0 (absent) or 1 (present)."""
    if not d:
        raise InputError("an intervention needs at least one concept", fix="pass e.g. {'lung_opacity': 0}")
    out = {}
    for k, v in d.items():
        if v not in (0, 1) or isinstance(v, float) and v not in (0.0, 1.0):
            raise InputError(f"do({k} = {v!r}): an intervention sets a concept to 0 (absent) or 1 (present)",
                             fix="use 0 or 1")
        out[check_id("concept", k)] = float(v)
    return out
