"""Build the causal graph from study-level assertions (MCRAG graph construction).

1. **Candidates** — every pair allowed by the role order (image finding →
   finding, finding → finding, finding → diagnosis) that co-occurs at least
   ``min_support`` times in the TRAIN split, plus the shipped priors
   (``resources/priors.jsonl``) and optional extractor proposals.  Per study a
   concept is 1 when asserted present, 0 when denied *or not mentioned*
   (radiology reports list what is abnormal; an unmentioned finding is taken as
   absent), and uncertain mentions follow ``kg.uncertain_as`` (``ignore`` drops
   the study from that pair's table).
2. **Refinement** (:mod:`kgrag.kg.refine`) — G-test with multiple-testing
   correction; conditional-independence pruning through mediators (CMH);
   DAG enforcement; retention ratio τ.
3. **Load** — edges with statistics, provenance and status into the graph store;
   locked (human-reviewed) edges keep their decision; leaks per concept; the
   build parameters and a change report are stored with the graph version.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from kgrag.graph.store import GraphStore
from kgrag.kg import stats
from kgrag.ontology import concepts
from kgrag.types import ALLOWED_EDGE_ROLES, Edge

log = logging.getLogger(__name__)
EXTRACTOR = "kgrag.kg.build"
EXTRACTOR_VERSION = "build.v1"


def load_priors() -> list[dict[str, str]]:
    text = resources.files("kgrag.resources").joinpath("priors.jsonl").read_text("utf-8")
    rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    cs = concepts()
    for r in rows:
        if r["src"] not in cs or r["dst"] not in cs:
            raise ValueError(f"priors.jsonl: unknown concept in {r}")
    return rows




@dataclass
class EdgeCandidate:
    src: str
    dst: str
    table: stats.Table
    source: str
    rationale: str | None = None
    power: float = 0.0
    p_value_marginal: float = 1.0
    p_value: float = 1.0
    pruned_by: str | None = None
    evidence: float = 0.0

    def to_edge(self, status: str, provenance: tuple[list[str], list[str], int]) -> Edge:
        t = self.table
        lo, hi = stats.power_ci(t)
        return Edge(
            src=self.src, dst=self.dst, p=round(self.power, 6), status=status, source=self.source,
            support=t.n11, n_c=t.n11 + t.n10, n_e_given_c=t.n11, n_not_c=t.n01 + t.n00, n_e_given_not_c=t.n01,
            p_e_given_c=stats.p_e_given_c(t), p_e_given_not_c=stats.p_e_given_not_c(t), lift=stats.lift(t),
            ci_low=lo, ci_high=hi, p_value=self.p_value, extractor=EXTRACTOR, extractor_version=EXTRACTOR_VERSION,
            evidence_studies=provenance[0], evidence_spans=provenance[1], evidence_count=provenance[2],
            rationale=self.rationale,
            note=(f"pruned: independent given {self.pruned_by}" if self.pruned_by else None),
        )


def build_candidates(study_concepts: Mapping[str, Mapping[str, str]], *, min_support: int, uncertain_as: str = "ignore",
                     priors: Iterable[Mapping[str, str]] = (), proposals: Iterable[Mapping[str, str]] = ()) -> list[EdgeCandidate]:
    cs = concepts()
    present_count: dict[str, int] = {}
    for a in study_concepts.values():
        for c, v in a.items():
            if v == "present":
                present_count[c] = present_count.get(c, 0) + 1
    out: dict[tuple[str, str], EdgeCandidate] = {}
    ids = [c for c in cs if present_count.get(c, 0) >= min_support]
    for c in ids:
        for e in ids:
            if c == e or (cs[c].role, cs[e].role) not in ALLOWED_EDGE_ROLES:
                continue
            t = stats.table_for(study_concepts, c, e, uncertain_as)
            if t.n11 >= min_support and stats.causal_power(t) > 0:
                out[(c, e)] = EdgeCandidate(c, e, t, "statistics")
    for src, rows in (("prior", priors), ("extractor", proposals)):
        for r in rows:
            key = (r["src"], r["dst"])
            if (cs[key[0]].role, cs[key[1]].role) not in ALLOWED_EDGE_ROLES:
                log.warning("%s edge %s -> %s breaks the role order; skipped", src, *key)
                continue
            if key in out:
                out[key].rationale = r.get("rationale")
                if src == "prior":
                    out[key].source = "prior"
            else:
                out[key] = EdgeCandidate(key[0], key[1], stats.table_for(study_concepts, *key, uncertain_as), src, r.get("rationale"))
    for cand in out.values():
        cand.power = stats.causal_power(cand.table)
        cand.p_value_marginal = stats.g_test(cand.table)[1]
    return sorted(out.values(), key=lambda x: (x.src, x.dst))


@dataclass
class BuildReport:
    graph_version: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    n_train_studies: int = 0
    n_candidates: int = 0
    n_pruned_ci: int = 0
    n_not_significant: int = 0
    n_cycle_breaks: int = 0
    n_accepted: int = 0
    n_proposed: int = 0
    n_rejected: int = 0
    n_locked_kept: int = 0
    changes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    tau_curve: list[tuple[float, int]] = field(default_factory=list)
    report_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def provenance_index(mentions: Iterable[Any]) -> dict[tuple[str, str], list[str]]:
    """(study, concept) -> spans 'study:start-end' of present mentions."""
    idx: dict[tuple[str, str], list[str]] = {}
    for m in mentions:
        if m.assertion == "present":
            idx.setdefault((m.study_id, m.concept), []).append(f"{m.study_id}:{m.start}-{m.end}")
    return idx


def build_graph(settings: Any, *, docstore: Any = None, store: GraphStore | None = None, progress: bool = True) -> BuildReport:
    from kgrag.docstore import DocStore
    from kgrag.kg import refine

    t0 = time.perf_counter()
    kg = settings.kg
    params = {"tau": kg.tau, "ci_alpha": kg.ci_alpha, "correction": kg.correction, "min_support": kg.min_support,
              "uncertain_as": kg.uncertain_as, "max_path_len": kg.max_path_len, "default_leak": kg.default_leak,
              "extractor": EXTRACTOR_VERSION}
    own_doc, own_store = docstore is None, store is None
    docstore = docstore or DocStore.from_settings(settings)
    if store is None:
        from kgrag.graph.factory import open_store

        store = open_store(settings)
    try:
        train = docstore.study_concepts(split="train")  # leakage guard: never val/test
        if not train:
            from kgrag.errors import InputError

            raise InputError("no train-split studies in the docstore", fix="run 'kgrag ingest MANIFEST' first")
        cands = build_candidates(train, min_support=kg.min_support, uncertain_as=kg.uncertain_as, priors=load_priors())
        result = refine.refine(cands, train, alpha=kg.ci_alpha, correction=kg.correction, tau=kg.tau,
                               uncertain_as=kg.uncertain_as)
        prov = provenance_index(docstore.mentions(split="train"))
        before = {(e["src"], e["dst"]): e for e in store.edges()}
        edges = []
        for cand, status in result.statuses:
            support = [sid for sid, a in train.items() if a.get(cand.src) == "present" and a.get(cand.dst) == "present"]
            sample = sorted(support)[: kg.provenance_sample]
            spans = [s for sid in sample for s in (prov.get((sid, cand.src), [])[:1] + prov.get((sid, cand.dst), [])[:1])]
            edges.append(cand.to_edge(status, (sample, spans, len(support))))
        store.upsert_concepts([{**concepts()[c].to_dict(), "leak": v} for c, v in
                               refine.leaks(train, [e for e in edges if e.status == "accepted"], kg.uncertain_as,
                                            kg.default_leak).items()])
        keys = {(e.src, e.dst) for e in edges}
        stale = [k for k, e in before.items() if k not in keys and not e.get("locked")]
        if stale:
            store.delete_edges(stale)
        up = store.upsert_edges(edges)
        store.set_meta("build_params", params)
        after = {(e["src"], e["dst"]): e for e in store.edges()}
        rep = BuildReport(params=params, n_train_studies=len(train), n_candidates=len(cands),
                          n_pruned_ci=result.n_pruned_ci, n_not_significant=result.n_not_significant,
                          n_cycle_breaks=result.n_cycle_breaks, n_locked_kept=len(up.skipped_locked),
                          tau_curve=result.tau_curve)
        for e in after.values():
            setattr(rep, f"n_{e['status']}", getattr(rep, f"n_{e['status']}") + 1)
        rep.changes = diff(before, after, kg.drift_threshold)
        rep.graph_version = store.version(params)
        rep.seconds = time.perf_counter() - t0
        store.compact()  # the next server start loads a snapshot instead of replaying the build
        from kgrag.paths import private_dir, write_private

        out = private_dir(settings.runs_dir / "kg")
        path = out / f"build-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}.json"
        snapshot = [{k: e[k] for k in ("src", "dst", "p", "status", "support", "p_value")} for e in after.values()]
        write_private(path, json.dumps({**rep.to_dict(), "edges": snapshot}, indent=1, default=str))
        rep.report_path = str(path)
        return rep
    finally:
        if own_doc:
            docstore.close()
        if own_store:
            store.close()


def diff(before: Mapping[tuple[str, str], Mapping[str, Any]], after: Mapping[tuple[str, str], Mapping[str, Any]],
         threshold: float) -> dict[str, Any]:
    acc_b = {k for k, e in before.items() if e.get("status") == "accepted"}
    acc_a = {k for k, e in after.items() if e.get("status") == "accepted"}
    moved = [{"src": k[0], "dst": k[1], "p_before": before[k]["p"], "p_after": after[k]["p"]}
             for k in acc_a & acc_b if abs(float(before[k]["p"] or 0) - float(after[k]["p"] or 0)) > threshold]
    return {"added": sorted(f"{s}->{d}" for s, d in acc_a - acc_b),
            "removed": sorted(f"{s}->{d}" for s, d in acc_b - acc_a), "p_moved": moved}


def latest_build_reports(settings: Any, n: int = 2) -> list[dict[str, Any]]:
    d = Path(settings.runs_dir) / "kg"
    files = sorted(d.glob("build-*.json"))[-n:] if d.is_dir() else []
    return [json.loads(f.read_text()) for f in files]
