"""``kgrag eval``: run the query pipeline on a manifest's test split and score it.

:func:`run_eval` reads the test split (:mod:`kgrag.eval.data`), refuses a home that
saw a test study (:mod:`kgrag.eval.guard`), plans the variants (the shipped causal
rerank, the semantic-only ablation α = 1, any ``--rerank`` modes, the random graph,
the α / τ / K sweeps, noise levels), answers every test query with
``QueryPipeline.run`` once per distinct (home, rerank, α, K), scores the answers
per task (:mod:`kgrag.eval.tasks`) with bootstrap CIs and paired tests, and writes
``results.json``, ``results.md``, ``report.html`` and the plots under
``$KGRAG_HOME/runs/eval/<timestamp>/`` (:mod:`kgrag.eval.report`).

Sweeps are one factor at a time: each value of α, τ or K is run with the other
settings at their defaults (the shipped rerank).  τ and the random graph change the
graph, so they run in scratch copies of the home (:mod:`kgrag.eval.scratch`).
Noise is injected into the returned evidence (:mod:`kgrag.eval.ablation`), so it
reaches what is computed from the evidence (retrieval metrics, evidence votes, the
top-1 retrieved report) but not the pipeline's own answer text and probabilities,
which the pipeline writes before returning; those metrics are reported as not
applicable under noise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kgrag import __version__
from kgrag.errors import InputError, KgragError

log = logging.getLogger(__name__)

FORMAT = "kgrag.eval.v1"
TASKS = ("retrieval", "vqa", "report", "diagnosis", "extraction")
SWEEP_AXES = ("alpha", "tau", "k")
PIPELINE_TASKS = ("retrieval", "vqa", "report", "diagnosis")


@dataclass(frozen=True)
class Variant:
    name: str
    rerank: str = "causal"
    alpha: float | None = None  # None: the home's setting
    k: int | None = None
    tau: float | None = None  # graph rebuilt with this retention ratio (scratch home)
    graph: str = "learned"  # or "random" (scratch home)
    noise: float = 0.0
    axis: str = "main"  # main | alpha | tau | k | graph | noise
    value: float | str | None = None
    base: str | None = None  # the variant a noise variant derives from

    @property
    def home_key(self) -> str:
        if self.tau is not None:
            return f"tau={self.tau:g}"
        return "random" if self.graph == "random" else "home"

    def run_key(self, settings: Any) -> tuple:
        rs = settings.retrieval
        return (self.home_key, self.rerank, rs.alpha if self.alpha is None else float(self.alpha), self.k or rs.k)


def parse_sweep(specs: Iterable[str]) -> dict[str, list[float]]:
    """``["alpha=0,0.5,1", "k=5,10"]`` → {"alpha": [0, 0.5, 1], "k": [5, 10]}."""
    out: dict[str, list[float]] = {}
    for spec in specs:
        for part in spec.split():
            key, sep, vals = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in SWEEP_AXES:
                raise InputError(f"sweep {part!r} is not AXIS=V1,V2,... with AXIS one of {SWEEP_AXES}",
                                 fix="e.g. --sweep alpha=0,0.25,0.5,0.75,1 tau=0.5,0.7,0.9 k=5,10,20")
            try:
                xs = [float(v) for v in vals.split(",") if v.strip()]
            except ValueError as e:
                raise InputError(f"sweep {part!r}: values must be numbers", fix="e.g. alpha=0,0.5,1") from e
            if not xs:
                raise InputError(f"sweep {part!r} has no values", fix="e.g. alpha=0,0.5,1")
            if key == "alpha" and not all(0 <= x <= 1 for x in xs):
                raise InputError(f"alpha values must lie in [0, 1]: {xs}", fix="e.g. alpha=0,0.5,1")
            if key == "tau" and not all(0 < x <= 1 for x in xs):
                raise InputError(f"tau values must lie in (0, 1]: {xs}", fix="e.g. tau=0.5,0.7,0.9")
            if key == "k" and not all(x >= 1 and float(x).is_integer() for x in xs):
                raise InputError(f"k values must be positive integers: {xs}", fix="e.g. k=5,10,20")
            out.setdefault(key, [])
            out[key] += [int(x) if key == "k" else x for x in xs if x not in out[key]]
    return out


def plan_variants(*, sweep: Mapping[str, Sequence[float]] | None = None, reranks: Sequence[str] = (),
                  graph_random: bool = False, noise: Sequence[float] = ()) -> list[Variant]:
    vs = [Variant("causal", "causal", axis="main"), Variant("semantic", "causal", alpha=1.0, axis="main")]
    for r in reranks:
        if r not in ("causal", "pagerank", "none"):
            raise InputError(f"--rerank {r!r} is not causal, pagerank or none", fix="pick from causal, pagerank, none")
        if r != "causal" and r not in {v.name for v in vs}:
            vs.append(Variant(r, r, axis="main"))
    main = list(vs)
    if graph_random:
        vs.append(Variant("random_graph", "causal", graph="random", axis="graph", value="random"))
    sweep = sweep or {}
    for a in sweep.get("alpha", []):
        vs.append(Variant(f"alpha={a:g}", "causal", alpha=float(a), axis="alpha", value=float(a)))
    for t in sweep.get("tau", []):
        vs.append(Variant(f"tau={t:g}", "causal", tau=float(t), axis="tau", value=float(t)))
    for k in sweep.get("k", []):
        vs.append(Variant(f"k={int(k)}", "causal", k=int(k), axis="k", value=int(k)))
    for f in noise:
        if not 0 < f <= 1:
            raise InputError(f"--noise {f} is not in (0, 1]", fix="e.g. --noise 0.5 (half the top-K replaced)")
        for b in main:
            vs.append(Variant(f"{b.name}+noise={f:g}", b.rerank, alpha=b.alpha, k=b.k, noise=float(f), axis="noise",
                              value=float(f), base=b.name))
    return vs


def compact(res: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a ``QueryPipeline.run`` answer the evaluators read."""
    a = res.get("answer")
    cfg = res.get("config", {})
    return {"evidence": [e["id"] for e in res["evidence"]],
            "scores": [e.get("score") for e in res["evidence"]],
            "answer": None if a is None else {k: a.get(k) for k in ("text", "yes_no", "probability", "concept")},
            "diagnoses": {d["concept"]: float(d["probability"]) for d in res.get("diagnoses", [])},
            "image_findings": {f["concept"]: float(f["probability"]) for f in res.get("image_findings", [])},
            "concepts": {c: float(p) for c, p in (res.get("concepts") or {}).items()},
            "seconds": cfg.get("seconds"), "graph_version": cfg.get("graph_version"),
            "index_version": cfg.get("index_version")}


# -- provenance of a run -------------------------------------------------------------------------


def git_commit() -> dict[str, Any] | None:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    out: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                           "cpus": os.cpu_count(), "node": platform.node()}
    try:
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if "torch" in sys.modules:
        t = sys.modules["torch"]
        out["torch"] = {"version": t.__version__, "threads": t.get_num_threads(),
                        "cuda": bool(t.cuda.is_available())}
    return out


def _home_versions(settings: Any, model_name: str) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {"path": str(settings.home), "kgrag_version": __version__}
    m = Path(settings.models_dir) / model_name / "manifest.json"
    if m.is_file():
        mm = json.loads(m.read_text())
        out["model"] = {k: mm.get(k) for k in ("name", "fingerprint", "built_at", "saved_at", "n_train", "n_val",
                                               "pooling", "text_encoder", "fusion", "seed")}
        out["model"]["reward_threshold"] = (mm.get("reward") or {}).get("threshold")
    i = Path(settings.index_dir) / "manifest.json"
    if i.is_file():
        im = json.loads(i.read_text())
        out["index"] = {k: im.get(k) for k in ("version", "encoder", "encoder_fingerprint", "graph_version", "built_at",
                                               "updated_at")}
    return out


# -- the run ----------------------------------------------------------------------------------------


def _timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _run_dir(settings: Any, out_dir: str | Path | None) -> Path:
    if out_dir is not None:
        p = Path(out_dir)
    else:
        p = Path(settings.runs_dir) / "eval" / _timestamp()
        n = 1
        while p.exists():
            n += 1
            p = p.with_name(f"{_timestamp()}-{n}")
    p.mkdir(parents=True, exist_ok=True)
    return p


def _shift_groups(es: Any, studies: Sequence[Any], train_styles: Sequence[str]) -> dict[str, set[str]]:
    """Test studies by distribution: style seen in training or not; for synth corpora,
    whether the site–heart-failure correlation of the train split holds for the study."""
    groups: dict[str, set[str]] = {}
    if any(s.style is not None for s in studies):
        seen = set(train_styles)
        groups["in_style"] = {s.id for s in studies if s.style is not None and s.style in seen}
        groups["out_of_style"] = {s.id for s in studies if s.style is not None and s.style not in seen}
    if any(s.site is not None for s in studies) and any("heart_failure" in s.labels for s in studies):
        groups["site_aligned"] = {s.id for s in studies if s.site is not None
                                  and (s.site == "B") == bool(s.labels.get("heart_failure"))}
        groups["site_reversed"] = {s.id for s in studies if s.site is not None
                                   and (s.site == "B") != bool(s.labels.get("heart_failure"))}
    if not groups:
        raise InputError(f"--shift needs test studies with a 'style' or a 'site' field; {es.manifest} has neither",
                         fix="evaluate a corpus written by 'kgrag synth --shift' (or one whose rows carry 'style')")
    return {k: v for k, v in groups.items() if v}


def _closed(q: Mapping[str, Any]) -> str | None:
    a = str(q.get("answer", "")).strip().lower()
    return a if a in ("yes", "no") else None


def run_eval(settings: Any, manifest: str | Path, tasks: Sequence[str], *, sweep: Mapping[str, Sequence[float]] | None = None,
             reranks: Sequence[str] = (), graph_random: bool = False, noise: Sequence[float] = (), shift: bool = False,
             out_dir: str | Path | None = None, model_name: str = "default", limit: int | None = None, seed: int = 13,
             n_boot: int = 1000, n_perm: int = 1000, query_from: str = "auto", concepts: str = "diagnoses",
             meteor: bool = True, progress: bool = True, command: str | None = None, keep_scratch: bool = False,
             plots: bool = True) -> dict[str, Any]:
    """Evaluate ``tasks`` on the test split of ``manifest`` against the home of ``settings``."""
    from kgrag.eval import report
    from kgrag.eval import tasks as T
    from kgrag.eval.data import read_eval_set

    t0 = time.perf_counter()
    tasks = list(dict.fromkeys(tasks))
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad:
        raise InputError(f"unknown task(s) {bad or tasks}", fix=f"use --task with one or more of {', '.join(TASKS)}")
    if query_from not in ("auto", "image", "findings"):
        raise InputError(f"--query-from {query_from!r}", fix="use auto, image or findings")
    if concepts not in ("diagnoses", "all"):
        raise InputError(f"--concepts {concepts!r}", fix="use diagnoses or all")
    es = read_eval_set(manifest, max_report_chars=settings.ingest.max_report_chars)
    studies = list(es.studies)
    if limit is not None and limit < len(studies):
        rng = random.Random(seed)
        keep = set(rng.sample([s.id for s in studies], limit))
        studies = [s for s in studies if s.id in keep]
    by_id = {s.id: s for s in studies}
    needs_pipeline = any(t in PIPELINE_TASKS for t in tasks)
    variants = plan_variants(sweep=sweep, reranks=reranks, graph_random=graph_random, noise=noise) if needs_pipeline else []
    run_dir = _run_dir(settings, out_dir)
    res: dict[str, Any] = {
        "format": FORMAT, "tasks": tasks,
        "run": {"dir": str(run_dir), "command": command or " ".join(sys.argv), "git": git_commit(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed, "n_boot": n_boot,
                "n_permutations": n_perm, "query_from": query_from, "limit": limit, "concepts": concepts,
                "sweep": dict(sweep or {}), "reranks": list(reranks), "graph_random": graph_random,
                "noise": list(noise), "shift": shift,
                "defaults": {"alpha": settings.retrieval.alpha, "k": settings.retrieval.k, "tau": settings.kg.tau,
                             "rerank": settings.retrieval.rerank}},
        "manifest": es.info(), "home": _home_versions(settings, model_name), "notes": [], "skipped": {},
        "failures": [], "variants": [], "results": {},
    }
    res["manifest"]["n_evaluated_studies"] = len(studies)

    from kgrag.ingest.extract import make_extractor

    extractor = make_extractor(settings)
    extractor.warm_up()
    ext_cache: dict[str, dict[str, str]] = {}

    def assertions_of(texts: Sequence[str]) -> list[dict[str, str]]:
        from kgrag.ingest.extract import study_level

        todo = sorted({t for t in texts if t not in ext_cache})
        if todo:
            ms = extractor.extract_many([(f"t{i}", t) for i, t in enumerate(todo)])
            for t, m in zip(todo, ms, strict=True):
                ext_cache[t] = study_level(m)
        return [ext_cache[t] for t in texts]

    def present(a: Mapping[str, str]) -> frozenset[str]:
        return frozenset(c for c, v in a.items() if v == "present" and c != "no_finding")

    groups = _shift_groups(es, studies, es.train_styles) if shift else {}
    if shift:
        res["shift"] = {"groups": {g: len(v) for g, v in groups.items()},
                        "synth_shift": (es.truth or {}).get("shift"), "train_styles": es.train_styles}

    records: dict[str, dict[str, dict[str, Any]]] = {}  # variant name -> qid -> record
    qmeta: dict[str, dict[str, Any]] = {}
    ctx = None
    with _sigterm_as_interrupt():
        if needs_pipeline:
            from kgrag.eval.guard import check_home

            res["guard"] = check_home(settings, [s.id for s in studies], model_name=model_name)
            ctx, homes_info = _run_pipeline(settings, studies, tasks, variants, records, qmeta, res, assertions_of,
                                            present, model_name=model_name, query_from=query_from, seed=seed,
                                            progress=progress, keep_scratch=keep_scratch)
            res["graphs"] = homes_info
            for v in variants:
                d = asdict(v)
                d["home"] = homes_info.get(v.home_key, {})
                res["variants"].append(d)
            ctx.report_target = ("impression" if query_from == "findings" or
                                 (query_from == "auto" and not any(s.images for s in studies)) else "report")
        coco = None
        for task in tasks:
            if task == "extraction":
                res["results"][task] = _score_extraction(studies, es.vocabulary, assertions_of, by_id, n_boot, seed)
                continue
            qids = sorted(q for q, m in qmeta.items() if m["kind"] == ("vqa" if task == "vqa" else "study"))
            qids = [q for q in qids if all(q in records[v.name] for v in variants)]
            if task == "report":  # a study without the reference text cannot be scored
                qids = [q for q in qids if T.plain_text(by_id[q].findings, by_id[q].impression, by_id[q].report,
                                                        ctx.report_target)]
            if not qids:
                res["results"][task] = {"skipped": "no test query could be answered for this task"}
                continue
            if task == "report" and coco is None:
                from kgrag.eval.metrics import CocoScorer

                coco = CocoScorer()
            ev = _evaluator(task, ctx, studies, es.vocabulary, concepts, coco, meteor)
            if ev is None:
                res["results"][task] = {"skipped": "no label concept has both classes among the evaluated studies"}
                continue
            if task == "report":
                texts = [t for v in variants for t in ev.texts(qids, records[v.name], ctx)]
                ctx.tokens.update(coco.tokenize(texts))
                cache = dict(zip(texts, assertions_of(texts), strict=True))
                ctx.present_of = lambda t, cache=cache: present(cache[t])
            res["results"][task] = _score_task(ev, variants, qids, records, ctx, groups, n_boot, n_perm, seed,
                                               progress=progress)
            if task == "retrieval":
                res["results"][task]["pair_retrieval"] = _pair_retrieval(settings, studies, model_name)
        if coco is not None:
            coco.close()
    res["run"]["seconds"] = round(time.perf_counter() - t0, 2)
    res["run"]["machine"] = machine()
    res["notes"] += _notes(res, variants)
    report.write_run(run_dir, res, records, plots=plots)
    return res


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt while an evaluation runs, so ``finally`` blocks stop
    the scratch homes' graph servers and remove them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _roles() -> dict[str, str]:
    from kgrag.ontology import concepts

    return {c.id: c.role for c in concepts().values()}


def _run_pipeline(settings, studies, tasks, variants, records, qmeta, res, assertions_of, present, *, model_name,
                  query_from, seed, progress, keep_scratch):
    """Answer every test query once per distinct (home, rerank, α, K); derive the noise variants."""
    import json

    from tqdm import tqdm

    from kgrag.docstore import DocStore
    from kgrag.eval import tasks as T
    from kgrag.eval.ablation import inject_noise, irrelevant_pool
    from kgrag.eval.cache import MemoModel
    from kgrag.query.pipeline import Query

    # queries
    queries: list[tuple[str, Any]] = []
    skipped: dict[str, int] = {}
    for s in studies:
        mode = query_from if query_from != "auto" else ("image" if s.images else "findings")
        if mode == "image" and not s.images:
            skipped["no image"] = skipped.get("no image", 0) + 1
            continue
        if mode == "findings" and not (s.findings and s.findings.strip()):
            skipped["no findings section"] = skipped.get("no findings section", 0) + 1
            continue
        base = {"images": s.images} if mode == "image" else {"findings": s.findings}
        if any(t in ("retrieval", "diagnosis", "report") for t in tasks):
            queries.append((s.id, base))
            qmeta[s.id] = {"kind": "study", "study": s.id, "mode": mode}
        if "vqa" in tasks:
            for j, q in enumerate(s.questions):
                ans = _closed(q)
                if ans is None or not q.get("question"):
                    skipped["open or unanswered question"] = skipped.get("open or unanswered question", 0) + 1
                    continue
                concept = q.get("concept")
                if not concept:
                    found = [c for c in assertions_of([q["question"]])[0]]
                    concept = found[0] if found else None
                qid = f"{s.id}#q{j}"
                queries.append((qid, {**base, "question": q["question"]}))
                qmeta[qid] = {"kind": "vqa", "study": s.id, "mode": mode,
                              "question": {"question": q["question"], "answer": ans, "concept": concept}}
    res["skipped"] = skipped
    if not queries:
        raise InputError("no test study can be queried (no images and no findings text)",
                         fix="use --query-from findings for text-only corpora, or check the manifest's image paths")
    # the evidence side of relevance: present sets of the indexed studies, from the docstore
    ids_path = Path(settings.index_dir) / "text" / "ids.json"
    if not ids_path.is_file():
        raise InputError(f"no index at {settings.index_dir}", fix="run 'kgrag index build' first")
    indexed = json.loads(ids_path.read_text())
    with DocStore.from_settings(settings) as ds:
        allc = ds.study_concepts()
        doc_assertions = {i: allc.get(i, {}) for i in indexed}
        doc_texts = {}
        for i in indexed:
            st = ds.get_study(i)
            if st is not None:
                doc_texts[i] = (st.findings, st.impression, st.report)
    doc_sets = {i: present(a) for i, a in doc_assertions.items()}
    qtexts = [s.report for s in studies]
    qsets = {s.id: present(a) for s, a in zip(studies, assertions_of(qtexts), strict=True)}

    def doc_text(sid: str, target: str) -> str:
        f, i, r = doc_texts.get(sid, (None, None, ""))
        return T.plain_text(f, i, r, target)

    ctx = T.Context(studies={s.id: s for s in studies}, vocabulary=[], roles=_roles(), query_sets={**qsets, **{
        q: qsets[m["study"]] for q, m in qmeta.items()}}, doc_sets=doc_sets, doc_assertions=doc_assertions,
        doc_text=doc_text)

    # homes: the user's, and scratch copies for τ and the random graph
    from kgrag.graph.factory import open_store

    store = open_store(settings)
    try:
        source_graph = store.export()
        build_params = store.get_meta("build_params") if hasattr(store, "get_meta") else None
        home_version = store.version()
    finally:
        store.close()
    homes: dict[str, Any] = {"home": settings}
    info: dict[str, Any] = {"home": {"graph_version": home_version,
                                     "accepted": sum(1 for e in source_graph["edges"] if e.get("status") == "accepted")}}
    need = sorted({v.home_key for v in variants} - {"home"})
    scratch = None
    try:
        if need:
            from kgrag.eval.scratch import ScratchHomes

            scratch = ScratchHomes(settings, keep=keep_scratch)
        for hk in need:
            if hk == "random":
                homes[hk], info[hk] = scratch.with_random_graph("random", source_graph, build_params, seed=seed)
            else:
                tau = float(hk.split("=", 1)[1])
                homes[hk], info[hk] = scratch.with_tau(hk.replace("=", "_"), tau, source_graph)
            info[hk]["scratch_home"] = str(homes[hk].home)
        # answer the queries
        timing: dict[str, Any] = {}
        runs: dict[tuple, dict[str, dict[str, Any]]] = {}
        memo: MemoModel | None = None
        for hk in ["home", *need]:
            keys = sorted({v.run_key(settings) for v in variants if v.home_key == hk and v.noise == 0})
            if not keys:
                continue
            pipe, memo = open_pipeline(homes[hk], model_name, memo)
            try:
                for key in keys:
                    _, rerank, alpha, k = key
                    out: dict[str, dict[str, Any]] = {}
                    secs = []
                    label = f"{hk} {rerank} alpha={alpha:g} k={k}"
                    for qid, q in tqdm(queries, desc=f"eval {label}", unit="query", disable=not progress, leave=False):
                        try:
                            r = compact(pipe.run(Query(k=k, alpha=alpha, rerank=rerank, id=qid, **q)))
                        except KgragError as e:
                            res["failures"].append({"query": qid, "run": label, "error": e.message})
                            continue
                        if qmeta[qid]["kind"] == "vqa":
                            r["question"] = qmeta[qid]["question"]
                        secs.append(r["seconds"] or 0.0)
                        out[qid] = r
                    runs[key] = out
                    timing[label] = {"queries": len(out), "p50_s": float(np.median(secs)) if secs else None,
                                     "p95_s": float(np.percentile(secs, 95)) if secs else None,
                                     "total_s": round(float(np.sum(secs)), 2)}
            finally:
                pipe.close()
    finally:
        if scratch is not None:  # the scratch graphs are not needed for scoring
            scratch.close()
    res["timing"] = timing
    if memo is not None:
        res["timing"]["encoder_memo"] = dict(memo.counts)
    for v in variants:
        if v.noise == 0:
            records[v.name] = runs[v.run_key(settings)]
    # noise: irrelevant indexed studies replace a share of each query's evidence
    pools: dict[str, list[str]] = {}
    for v in variants:
        if v.noise == 0:
            continue
        base = records[v.base]
        out = {}
        for qid, r in base.items():
            sid = qmeta[qid]["study"]
            if sid not in pools:
                pools[sid] = irrelevant_pool(set(qsets[sid]), doc_sets)
            ev, pos = inject_noise(r["evidence"], v.noise, pools[sid], random.Random(f"{seed}:{v.noise}:{qid}"))
            out[qid] = {**r, "evidence": ev, "noise_positions": pos, "scores": None, "answer": None, "diagnoses": None,
                        "image_findings": {}, "concepts": None}
        records[v.name] = out
    return ctx, info


def open_pipeline(settings: Any, model_name: str, memo: Any = None) -> tuple[Any, Any]:
    """A warm QueryPipeline whose model sits behind the evaluation's encoder memo.

    The pipeline is opened as ``QueryPipeline.from_settings`` opens it (model, graph
    store, indexes checked against both, extractor, docstore), with the loaded model
    wrapped by :class:`~kgrag.eval.cache.MemoModel` before the stages are built, so
    every stage that encodes reads the memo.  ``memo`` carries the cache over from a
    previous home (the same model)."""
    from kgrag.eval.cache import MemoModel
    from kgrag.query.pipeline import QueryPipeline

    if not hasattr(QueryPipeline, "warm_up"):  # a pipeline whose constructor does the I/O
        pipe = QueryPipeline.from_settings(settings, model_name=model_name)
        memo = MemoModel(pipe.model) if memo is None else memo.rebind(pipe.model)
        pipe.model = memo
        return pipe, memo
    from kgrag.docstore import DocStore
    from kgrag.graph.factory import open_store
    from kgrag.index.indexset import IndexSet
    from kgrag.ingest.extract import RuleExtractor
    from kgrag.model.retrieval_model import RetrievalModel

    model = RetrievalModel.load(settings.models_dir / model_name)
    model.warm_up()
    memo = MemoModel(model) if memo is None else memo.rebind(model)
    store = open_store(settings)
    try:
        index = IndexSet.load(settings.index_dir, expect_encoder=model.fingerprint,
                              expect_graph_version=store.version())
        ext = RuleExtractor()
        ext.warm_up()
        pipe = QueryPipeline(settings, memo, index, store, DocStore.from_settings(settings), ext)
        pipe.warm_up()
    except BaseException:
        store.close()
        raise
    return pipe, memo


def _evaluator(task: str, ctx: Any, studies: Sequence[Any], vocabulary: Sequence[str], concepts: str, coco: Any,
               meteor: bool) -> Any:
    from kgrag.eval import tasks as T

    if task == "retrieval":
        return T.RetrievalEval()
    if task == "vqa":
        return T.VQAEval()
    if task == "report":
        return T.ReportEval(coco, meteor=meteor)
    if task == "diagnosis":
        roles = ctx.roles
        cands = [c for c in vocabulary if (concepts == "all" or roles.get(c) == "Diagnosis")
                 and not (concepts == "diagnoses" and c == "no_finding")]
        both = [c for c in cands if 0 < sum(s.labels.get(c, 0) for s in studies) < len(studies)]
        if not both:
            return None
        ctx.diagnosis_concepts = both
        return T.DiagnosisEval(both)
    raise InputError(f"unknown task {task!r}", fix=f"use one of {TASKS}")


def _ci_all(ev: Any, d: Any, n_boot: int, seed: int) -> dict[str, Any]:
    from kgrag.eval.metrics import bootstrap_ci

    n = len(d["sid"])
    out = {}
    for m in ev.primary:
        if ev.scalar(d, m) is None:
            continue
        out[m] = {"value": ev.scalar(d, m), **bootstrap_ci(lambda idx, m=m: ev.scalar(d, m, idx), n, n_boot=n_boot,
                                                            seed=seed)}
    return out


def _paired(ev: Any, da: Any, db: Any, a: str, b: str, n_boot: int, n_perm: int, seed: int) -> list[dict[str, Any]]:
    from kgrag.eval import tasks as T
    from kgrag.eval.metrics import paired_test

    n = len(da["sid"])
    both = T.stack(da, db)
    out = []
    for m in ev.primary:
        if ev.scalar(da, m) is None or ev.scalar(db, m) is None:
            continue

        def stat(ia, ib, m=m):
            x, y = ev.scalar(both, m, ia), ev.scalar(both, m, ib)
            return None if x is None or y is None else x - y

        r = paired_test(stat, n, n_resamples=n_perm, seed=seed, n_boot=n_boot)
        out.append({"a": a, "b": b, "metric": m, "a_value": ev.scalar(da, m), "b_value": ev.scalar(db, m), **r})
    return out


def _pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    pairs = [("causal", "semantic"), ("pagerank", "semantic"), ("none", "semantic"), ("causal", "random_graph")]
    noisy = sorted({n.split("+", 1)[1] for n in names if "+noise=" in n})
    for lvl in noisy:
        pairs.append((f"causal+{lvl}", f"semantic+{lvl}"))
    return [(a, b) for a, b in pairs if a in names and b in names]


def _score_task(ev, variants, qids, records, ctx, groups, n_boot, n_perm, seed, *, progress):
    from tqdm import tqdm

    from kgrag.eval import tasks as T

    data = {}
    out: dict[str, Any] = {"n_queries": len(qids), "primary": list(ev.primary), "variants": {}, "paired": [],
                           "groups": {}}
    for v in tqdm(variants, desc=f"score {ev.task}", unit="variant", disable=not progress, leave=False):
        d = ev.data(qids, records[v.name], ctx)
        data[v.name] = d
        full = ev.full(d, ctx)
        out["variants"][v.name] = {"metrics": full, "ci": _ci_all(ev, d, n_boot, seed)}
        ev.clear_cache()
    names = [v.name for v in variants]
    pairs = _pairs(names)
    for a, b in tqdm(pairs, desc=f"paired {ev.task}", unit="pair", disable=not progress, leave=False):
        out["paired"] += _paired(ev, data[a], data[b], a, b, n_boot, n_perm, seed)
        ev.clear_cache()
    # groups: every variant's point values; CIs and paired tests for the main and noise variants
    with_ci = {v.name for v in variants if v.axis in ("main", "graph", "noise")}
    for g, ids in groups.items():
        idx = np.array([i for i, s in enumerate(data[names[0]]["sid"]) if s in ids], int)
        if len(idx) == 0:
            continue
        gd = {v: T.take(d, idx) for v, d in data.items()}
        go: dict[str, Any] = {"n": int(len(idx)), "variants": {}, "paired": []}
        for v in names:
            go["variants"][v] = {m: ev.scalar(gd[v], m) for m in ev.primary}
            go["variants"][v]["ci"] = _ci_all(ev, gd[v], n_boot, seed) if v in with_ci else {}
            ev.clear_cache()
        for a, b in pairs:
            go["paired"] += _paired(ev, gd[a], gd[b], a, b, n_boot, n_perm, seed)
            ev.clear_cache()
        out["groups"][g] = go
    return out


def _score_extraction(studies, vocabulary, assertions_of, by_id, n_boot, seed) -> dict[str, Any]:
    from kgrag.eval import tasks as T

    if not vocabulary:
        return {"skipped": "the manifest has no labels to score the extractor against"}
    qids = [s.id for s in studies]
    labels = [c for c in vocabulary if any(by_id[q].labels.get(c) for q in qids)]
    if not labels:
        return {"skipped": "no label concept has a positive test study"}
    ev = T.ExtractionEval(labels)
    recs = dict(zip(qids, assertions_of([s.report for s in studies]), strict=True))
    ctx = T.Context(studies=by_id, vocabulary=list(vocabulary), roles={}, query_sets={}, doc_sets={}, doc_assertions={})
    d = ev.data(qids, recs, ctx)
    return {"n_queries": len(qids), "primary": list(ev.primary),
            "variants": {"extractor": {"metrics": ev.full(d, ctx), "ci": _ci_all(ev, d, n_boot, seed)}},
            "paired": [], "groups": {}}


def _pair_retrieval(settings: Any, studies: Sequence[Any], model_name: str) -> dict[str, Any]:
    """Encoder-level retrieval among the test studies: each test image against every test
    report, its own report the only match (the contrastive model's Recall@k)."""
    from kgrag.eval.metrics import pair_retrieval
    from kgrag.imaging import IMAGE_SIZE, load_image
    from kgrag.model.encoders import l2n
    from kgrag.model.retrieval_model import RetrievalModel

    with_img = [s for s in studies if s.images]
    if len(with_img) < 2:
        return {"skipped": "fewer than two test studies with images"}
    model = RetrievalModel.load(Path(settings.models_dir) / model_name, device=settings.models.device)
    model.warm_up()
    zi = []
    for s in with_img:
        v = model.encode_images([load_image(p, size=IMAGE_SIZE) for p in s.images])
        zi.append(l2n(v.mean(axis=0, keepdims=True))[0])
    zt = model.encode_texts([s.report for s in with_img])
    out = pair_retrieval(np.stack(zi) @ zt.T)
    out["gallery"] = "the test split's reports"
    return out


def _notes(res: Mapping[str, Any], variants: Sequence[Variant]) -> list[str]:
    notes = []
    if any(v.noise for v in variants):
        notes.append("Noise is injected into the returned evidence; the pipeline's answer (its text, yes/no, "
                     "probability, diagnoses) is computed before that and is not re-scored under noise.")
    if "diagnosis" in res["results"]:
        notes.append("Diagnosis 'answer' probabilities do not depend on the rerank (they come from the graph given "
                     "V_I); only the graph variants (tau, random graph) can change them.")
    if "report" in res["results"]:
        notes.append("The 'generated' report is the pipeline's answer text; 'retrieved_top1' is the top evidence "
                     "study's own report, which the rerank does change.")
    return notes
