"""Per-task scoring of the pipeline's answers on the test split.

Each evaluator turns the per-query records of one variant into aligned per-example
arrays (``data``), computes every metric of the task on them (``full``), and exposes
a few scalar metrics (``primary``) for bootstrap CIs and paired tests
(``scalar(data, name, idx)`` on a subset of examples).  A record is the compact
form of one ``QueryPipeline.run`` answer (see :func:`kgrag.eval.harness.compact`).

Definitions (``docs/evaluation.md`` has the full text):

- *present set* of a study: the concepts kgrag's extractor asserts present in its
  report (``no_finding`` left out); the query side is extracted from the manifest's
  report, the evidence side is the docstore's mentions — the same extractor on both;
- retrieval: ``recall@k`` and MRR count an evidence item relevant when its present
  set equals the query study's (relevant items are counted over the whole index);
  ``concept_match@k`` is the share of queries with such an item in the top k (MMedRAG++);
  ``top1/top10_accuracy`` use a coarser relevance, the same set of present diagnoses;
  ``mean_jaccard`` is the mean Jaccard overlap of the evidence's present sets with the query's;
- diagnosis: two scorers per concept — ``answer``, the answer's own P(c | V_I)
  (``concepts`` of the query output: exact inference for every concept the graph
  answers, V_I concepts at their q or 1/0 from findings text; without it, the listed
  ``diagnoses``, a left-out one counting 0, and the image-finding probability), and
  ``vote``, the share of the top-K evidence asserting the concept present; labels
  are the manifest's ``labels`` (missing key = 0); a prediction is positive at ≥ 0.5;
- VQA: closed questions (answer yes/no); ``answer`` is the pipeline's answer
  (``yes_no``, ``probability``; an unanswered question counts as wrong in accuracy and
  is left out of AUC), ``vote`` the share of the top-K evidence asserting the
  question's concept present;
- report: the pipeline's text (``generated``; citation marks and the "Compare: ids"
  list removed) and the top-1 evidence study's own text (``retrieved_top1``) against the
  study's report (or impression), section headers removed from all three;
- extraction: the extractor's present set (and present-or-uncertain, CheXpert's
  U-Ones) against the manifest's positive labels, over the label vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kgrag.eval import metrics as M
from kgrag.eval import reference as R

Data = dict[str, np.ndarray]
_HEADER = re.compile(r"\b(FINDINGS|IMPRESSION|INDICATION|COMPARISON|HISTORY|TECHNIQUE)\s*:\s*", re.I)
_CITE = re.compile(r"\[[^\]]*\]")
_COMPARE = re.compile(r"\s*Compare:\s*[^.]*\.?")


def take(d: Data, idx: np.ndarray) -> Data:
    return {k: v[idx] for k, v in d.items()}


def stack(a: Data, b: Data) -> Data:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def _obj(xs: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(xs), dtype=object)
    for i, x in enumerate(xs):
        out[i] = x
    return out


def weights(d: Data, idx: np.ndarray | None) -> np.ndarray:
    """Multiplicity of each example in a resample (``idx`` may repeat rows); all 1 when None."""
    n = len(d["sid"])
    return np.ones(n) if idx is None else np.bincount(np.asarray(idx, int), minlength=n).astype(float)


def wmean(v: np.ndarray, c: np.ndarray) -> float | None:
    v = np.asarray(v, float)
    ok = ~np.isnan(v) & (c > 0)
    return float(np.dot(c[ok], v[ok]) / c[ok].sum()) if ok.any() else None


class PairCache:
    """W[i, j] = 1 if s_i > s_j, 1/2 if equal, else 0, per score vector, so that the AUC of a
    resample with multiplicities c is (c·y₊)ᵀ W (c·y₋) / (Σc·y₊ · Σc·y₋) — the Mann–Whitney
    statistic of the resample, ties counting one half — in one product per resample."""

    def __init__(self) -> None:
        self._m: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def clear(self) -> None:
        self._m.clear()

    def auc(self, P: np.ndarray, j: int | None, y: np.ndarray, c: np.ndarray) -> float | None:
        col = P if j is None else P[:, j]
        key = (id(P), -1 if j is None else j)
        hit = self._m.get(key)
        if hit is None or hit[0] is not P:
            s = np.nan_to_num(np.asarray(col, float), nan=-np.inf)
            W = (s[:, None] > s[None, :]).astype(float) + 0.5 * (s[:, None] == s[None, :])
            hit = (P, W)
            self._m[key] = hit
        ok = ~np.isnan(np.asarray(col, float))
        cp, cn = c * ((y == 1) & ok), c * ((y == 0) & ok)
        sp, sn = cp.sum(), cn.sum()
        if sp == 0 or sn == 0:
            return None
        return float(cp @ hit[1] @ cn / (sp * sn))


def plain_text(findings: str | None, impression: str | None, report: str | None, target: str) -> str:
    """Report text without section headers: findings + impression, or the impression alone."""
    if target == "impression":
        t = impression or ""
    elif findings or impression:
        t = " ".join(x.strip() for x in (findings, impression) if x and x.strip())
    else:
        t = report or ""
    return _HEADER.sub("", t).strip()


def clean_generated(text: str | None, target: str) -> str:
    """A generated report as prose: citation marks and the "Compare: ids." list removed;
    for the impression target, the part after its IMPRESSION header when it has one."""
    t = text or ""
    if target == "impression":
        m = re.search(r"IMPRESSION\s*:", t, re.I)
        if m:
            t = t[m.end():]
    t = _COMPARE.sub(" ", _CITE.sub("", t))
    return re.sub(r"\s+", " ", _HEADER.sub("", t)).strip()


@dataclass
class Context:
    """What the evaluators share: the test studies, concept sets and label vocabulary."""

    studies: Mapping[str, Any]  # id -> EvalStudy
    vocabulary: list[str]
    roles: Mapping[str, str]
    query_sets: Mapping[str, frozenset[str]]  # test study -> present set (extractor on its report)
    doc_sets: Mapping[str, frozenset[str]]  # indexed study -> present set (docstore mentions)
    doc_assertions: Mapping[str, Mapping[str, str]]
    doc_text: Callable[[str, str], str] = lambda sid, target: ""
    diagnosis_concepts: list[str] = field(default_factory=list)
    report_target: str = "report"
    tokens: dict[str, str] = field(default_factory=dict)  # text -> PTB-tokenized text
    present_of: Callable[[str], frozenset[str]] = lambda text: frozenset()
    _by_set: dict[frozenset[str], set[str]] | None = None
    _by_diag: dict[frozenset[str], set[str]] | None = None

    def diag_set(self, s: frozenset[str]) -> frozenset[str]:
        return frozenset(c for c in s if self.roles.get(c) == "Diagnosis")

    def relevant_exact(self, q: frozenset[str]) -> set[str]:
        if self._by_set is None:
            self._by_set = {}
            for d, s in self.doc_sets.items():
                self._by_set.setdefault(s, set()).add(d)
        return self._by_set.get(q, set())

    def relevant_diag(self, q: frozenset[str]) -> set[str]:
        if self._by_diag is None:
            self._by_diag = {}
            for d, s in self.doc_sets.items():
                self._by_diag.setdefault(self.diag_set(s), set()).add(d)
        return self._by_diag.get(self.diag_set(q), set())

    def vote(self, evidence: Sequence[str], concept: str) -> float:
        if not evidence:
            return float("nan")
        return sum(1 for e in evidence if self.doc_assertions.get(e, {}).get(concept) == "present") / len(evidence)


class Evaluator:
    """``scalar(d, name, idx)`` evaluates a primary metric on the resample ``idx`` (row
    indices, repeats allowed) through per-example multiplicities, without copying the data."""

    task = ""
    primary: tuple[str, ...] = ()
    pairs = PairCache()

    def clear_cache(self) -> None:
        self.pairs.clear()
    #: whether the task's numbers come from the pipeline's answers (noise cannot reach them)
    needs_answer: tuple[str, ...] = ()

    def data(self, qids: Sequence[str], records: Mapping[str, Mapping[str, Any]], ctx: Context) -> Data:
        raise NotImplementedError

    def scalar(self, d: Data, name: str, idx: np.ndarray | None = None) -> float | None:
        raise NotImplementedError

    def full(self, d: Data, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def texts(self, qids: Sequence[str], records: Mapping[str, Mapping[str, Any]], ctx: Context) -> list[str]:
        """Texts the evaluator will tokenize / extract (prepared in bulk by the harness)."""
        return []


# -- retrieval ---------------------------------------------------------------------------------


class RetrievalEval(Evaluator):
    task = "retrieval"
    KS = (1, 5, 10)
    primary = ("mrr", "concept_match@10", "top10_accuracy", "recall@10", "mean_jaccard")

    def data(self, qids, records, ctx):
        ranked, rel_exact, rel_diag, jac = [], [], [], []
        for q in qids:
            ev = list(records[q]["evidence"])
            qs = ctx.query_sets[q]
            ranked.append(ev)
            rel_exact.append(ctx.relevant_exact(qs))
            rel_diag.append(ctx.relevant_diag(qs))
            js = [(len(qs & ctx.doc_sets.get(e, frozenset())) / len(qs | ctx.doc_sets.get(e, frozenset())))
                  if (qs | ctx.doc_sets.get(e, frozenset())) else 1.0 for e in ev]
            jac.append(float(np.mean(js)) if js else np.nan)
        ex = M.ranking_metrics(ranked, rel_exact, self.KS)["per_query"]
        dg = M.ranking_metrics(ranked, rel_diag, (1, 10))["per_query"]
        d: Data = {"sid": np.array(qids, dtype=object), "mrr": ex["rr"], "mean_jaccard": np.array(jac),
                   "top1_accuracy": dg["hit@1"], "top10_accuracy": dg["hit@10"],
                   "n_relevant": np.array([len(r) for r in rel_exact], float)}
        for k in self.KS:
            d[f"concept_match@{k}"] = ex[f"hit@{k}"]
            d[f"recall@{k}"] = ex[f"recall@{k}"]
        return d

    def scalar(self, d, name, idx=None):
        return wmean(d[name], weights(d, idx))

    def full(self, d, ctx):
        names = ["mrr", "top1_accuracy", "top10_accuracy", "mean_jaccard"] + [
            f"{m}@{k}" for m in ("recall", "concept_match") for k in self.KS]
        out = {n: self.scalar(d, n) for n in names}
        out["n"] = int(len(d["sid"]))
        out["queries_without_relevant_in_index"] = int((d["n_relevant"] == 0).sum())
        return out


# -- diagnosis ---------------------------------------------------------------------------------


class DiagnosisEval(Evaluator):
    task = "diagnosis"
    primary = ("vote_macro_auc", "vote_macro_balanced_accuracy", "answer_macro_auc", "answer_macro_balanced_accuracy")
    needs_answer = ("answer_macro_auc", "answer_macro_balanced_accuracy", "answer_ece")

    def __init__(self, concepts: Sequence[str]) -> None:
        self.concepts = list(concepts)

    def data(self, qids, records, ctx):
        C = self.concepts
        Y = np.array([[ctx.studies[q].labels.get(c, 0) for c in C] for q in qids], float).reshape(len(qids), len(C))
        PA = np.full((len(qids), len(C)), np.nan)
        PV = np.full((len(qids), len(C)), np.nan)
        for i, q in enumerate(qids):
            r = records[q]
            for j, c in enumerate(C):
                PV[i, j] = ctx.vote(r["evidence"], c)
                if r.get("diagnoses") is None:  # not available (noise variants)
                    continue
                post = r.get("concepts") or {}
                if c in post:  # the answer's exact P(c | V_I), untruncated
                    PA[i, j] = post[c]
                elif ctx.roles.get(c) == "Diagnosis":
                    PA[i, j] = r["diagnoses"].get(c, 0.0)
                elif c in r.get("image_findings", {}):
                    PA[i, j] = r["image_findings"][c]
        return {"sid": np.array(qids, dtype=object), "Y": Y, "PA": PA, "PV": PV}

    def scalar(self, d, name, idx=None):
        scorer, _, metric = name.partition("_")
        P = d["PA"] if scorer == "answer" else d["PV"]
        Y = d["Y"]
        if metric == "ece":
            dd = d if idx is None else take(d, idx)
            P2 = dd["PA"] if scorer == "answer" else dd["PV"]
            ok = ~np.isnan(P2)
            return M.calibration(dd["Y"][ok], P2[ok])["ece"] if ok.any() else None
        c = weights(d, idx)
        vals = []
        for j in range(Y.shape[1]):
            if metric == "macro_auc":
                v = self.pairs.auc(P, j, Y[:, j], c)
            elif metric == "macro_balanced_accuracy":
                ok = ~np.isnan(P[:, j])
                cp, cn = c * ((Y[:, j] == 1) & ok), c * ((Y[:, j] == 0) & ok)
                if cp.sum() == 0 or cn.sum() == 0:
                    continue
                pred = np.nan_to_num(P[:, j], nan=0.0) >= 0.5
                v = 0.5 * (cp[pred].sum() / cp.sum() + cn[~pred].sum() / cn.sum())
            else:
                raise KeyError(name)
            if v is not None:
                vals.append(float(v))
        return float(np.mean(vals)) if vals else None

    def full(self, d, ctx):
        out: dict[str, Any] = {"n": int(len(d["sid"])), "concepts": self.concepts,
                               "prevalence": {c: float(d["Y"][:, j].mean()) for j, c in enumerate(self.concepts)}}
        for scorer, P in (("answer", d["PA"]), ("vote", d["PV"])):
            if np.all(np.isnan(P)):
                out[scorer] = None
                continue
            per = {}
            for j, c in enumerate(self.concepts):
                ok = ~np.isnan(P[:, j])
                y, p = d["Y"][ok, j].astype(int), P[ok, j]
                if len(y) == 0:
                    continue
                b = M.binary_metrics(y, (p >= 0.5).astype(int))
                per[c] = {"auc": M.auc(y, p), "balanced_accuracy": b["balanced_accuracy"], "accuracy": b["accuracy"],
                          "f1": b["f1"], "ece": M.calibration(y, p)["ece"], "n": int(len(y)), "positives": int(y.sum())}
            aucs = [v["auc"] for v in per.values() if v["auc"] is not None]
            bals = [v["balanced_accuracy"] for c, v in per.items() if 0 < v["positives"] < v["n"]]
            ok = ~np.isnan(P)
            cal = M.calibration(d["Y"][ok].astype(int), P[ok])
            out[scorer] = {"macro_auc": float(np.mean(aucs)) if aucs else None,
                           "macro_balanced_accuracy": float(np.mean(bals)) if bals else None,
                           "ece": cal["ece"], "reliability": cal["bins"], "per_concept": per}
        return out


# -- VQA -----------------------------------------------------------------------------------------


class VQAEval(Evaluator):
    task = "vqa"
    primary = ("answer_accuracy", "answer_auc", "vote_accuracy", "vote_auc")
    needs_answer = ("answer_accuracy", "answer_auc", "answer_f1", "answer_coverage")

    def data(self, qids, records, ctx):
        y, pa, ya, pv, concept, sid = [], [], [], [], [], []
        for q in qids:
            r = records[q]
            meta = r["question"]
            y.append(1.0 if meta["answer"] == "yes" else 0.0)
            concept.append(meta.get("concept"))
            sid.append(q.split("#", 1)[0])
            a = r.get("answer")
            if a is None:
                pa.append(np.nan)
                ya.append(np.nan)
            else:
                pa.append(np.nan if a.get("probability") is None else float(a["probability"]))
                ya.append({"yes": 1.0, "no": 0.0}.get(a.get("yes_no"), -1.0))  # -1: unanswered
            pv.append(ctx.vote(r["evidence"], meta["concept"]) if meta.get("concept") else np.nan)
        return {"sid": np.array(sid, dtype=object), "y": np.array(y), "pa": np.array(pa), "ya": np.array(ya),
                "pv": np.array(pv), "concept": _obj(concept)}

    def scalar(self, d, name, idx=None):
        scorer, _, metric = name.partition("_")
        y = d["y"]
        if scorer == "answer":
            if np.all(np.isnan(d["ya"])):
                return None
            pred, prob, key = d["ya"], d["pa"], "pa"
        else:
            prob, key = d["pv"], "pv"
            pred = np.where(np.isnan(prob), -1.0, (prob >= 0.5).astype(float))
        c = weights(d, idx)
        if metric == "accuracy":
            return float(np.dot(c, pred == y) / c.sum())
        if metric == "coverage":
            return float(np.dot(c, pred >= 0) / c.sum())
        if metric == "auc":
            return self.pairs.auc(d[key], None, y, c)
        if metric == "f1":
            tp = float(np.dot(c, (pred == 1) & (y == 1)))
            fp = float(np.dot(c, (pred == 1) & (y == 0)))
            fn = float(np.dot(c, (y == 1) & (pred != 1)))
            return M.f1_from_counts(tp, fp, fn)
        raise KeyError(name)

    def full(self, d, ctx):
        out: dict[str, Any] = {"n": int(len(d["y"])), "yes_share": float(d["y"].mean()) if len(d["y"]) else None}
        for scorer in ("answer", "vote"):
            if scorer == "answer" and np.all(np.isnan(d["ya"])):
                out[scorer] = None
                continue
            if scorer == "answer":
                pred, prob = d["ya"], d["pa"]
            else:
                prob = d["pv"]
                pred = np.where(np.isnan(prob), -1.0, (prob >= 0.5).astype(float))
            ans = pred >= 0
            y = d["y"].astype(int)
            res: dict[str, Any] = {"accuracy": float(np.mean(pred == d["y"])), "coverage": float(ans.mean())}
            if ans.any():
                b = M.binary_metrics(y[ans], pred[ans].astype(int))
                res.update({"answered_accuracy": b["accuracy"], "balanced_accuracy": b["balanced_accuracy"],
                            "precision": b["precision"], "recall": b["recall"], "f1": b["f1"]})
            ok = ~np.isnan(prob)
            res["auc"] = M.auc(y[ok], prob[ok]) if ok.any() else None
            res["ece"] = M.calibration(y[ok], prob[ok])["ece"] if ok.any() else None
            per = {}
            for c in sorted({c for c in d["concept"] if c}):
                m = d["concept"] == c
                per[c] = {"n": int(m.sum()), "accuracy": float(np.mean(pred[m] == d["y"][m])),
                          "auc": M.auc(y[m & ok], prob[m & ok]) if (m & ok).any() else None}
            res["per_concept"] = per
            out[scorer] = res
        return out


# -- report generation ---------------------------------------------------------------------


class ReportEval(Evaluator):
    task = "report"
    SOURCES = ("generated", "retrieved_top1")
    primary = ("generated_clinical_f1", "retrieved_top1_clinical_f1", "generated_bleu_4", "retrieved_top1_bleu_4",
               "generated_rouge_l", "retrieved_top1_rouge_l")
    needs_answer = ("generated_clinical_f1", "generated_bleu_4", "generated_rouge_l")

    def __init__(self, coco: Any = None, meteor: bool = True) -> None:
        self.coco = coco  # a metrics.CocoScorer shared across variants
        self.meteor = meteor

    def _hyp(self, r: Mapping[str, Any], src: str, ctx: Context) -> str | None:
        if src == "generated":
            a = r.get("answer")
            return None if a is None else clean_generated(a.get("text"), ctx.report_target)
        return ctx.doc_text(r["evidence"][0], ctx.report_target) if r["evidence"] else ""

    def _ref(self, q: str, ctx: Context) -> str:
        s = ctx.studies[q]
        return plain_text(s.findings, s.impression, s.report, ctx.report_target)

    def texts(self, qids, records, ctx):
        out = [self._ref(q, ctx) for q in qids]
        for q in qids:
            for src in self.SOURCES:
                h = self._hyp(records[q], src, ctx)
                if h is not None:
                    out.append(h)
        return out

    def data(self, qids, records, ctx):
        refs = [self._ref(q, ctx) for q in qids]
        d: Data = {"sid": np.array(qids, dtype=object), "ref_tok": _obj([ctx.tokens[t] for t in refs])}
        ref_sets = [ctx.present_of(t) for t in refs]
        labels = sorted(set().union(*ref_sets)) if ref_sets else []
        d["labels"] = _obj([labels] * len(qids))
        for src in self.SOURCES:
            hyps = [self._hyp(records[q], src, ctx) for q in qids]
            if any(h is None for h in hyps):
                d[f"{src}_tok"] = _obj([None] * len(qids))
                continue
            d[f"{src}_text"] = _obj(hyps)
            d[f"{src}_tok"] = _obj([ctx.tokens[h] for h in hyps])
            hs = [ctx.present_of(h) for h in hyps]
            G = np.array([[c in s for c in labels] for s in ref_sets], float).reshape(len(qids), len(labels))
            P = np.array([[c in s for c in labels] for s in hs], float).reshape(len(qids), len(labels))
            d[f"{src}_G"], d[f"{src}_P"] = G, P
            d[f"{src}_tp"], d[f"{src}_fp"] = (G * P).sum(1), ((1 - G) * P).sum(1)
            d[f"{src}_fn"] = (G * (1 - P)).sum(1)
            d[f"{src}_sets"] = _obj([sorted(s) for s in hs])
            st = [R.bleu_stats(h.split(), r.split()) for h, r in zip(d[f"{src}_tok"], d["ref_tok"], strict=True)]
            d[f"{src}_bleu_correct"] = np.array([x[0] for x in st], float).reshape(len(qids), 4)
            d[f"{src}_bleu_guess"] = np.array([x[1] for x in st], float).reshape(len(qids), 4)
            d[f"{src}_bleu_len"] = np.array([[x[2], x[3]] for x in st], float).reshape(len(qids), 2)
            per = self.coco.score(list(d["ref_tok"]), list(d[f"{src}_tok"]), meteor=False)["per_example"]
            for m in ("rouge_l", "cider"):
                d[f"{src}_{m}"] = np.array(per[m])
        d["ref_sets"] = _obj([sorted(s) for s in ref_sets])
        return d

    def _ok(self, d: Data, src: str) -> bool:
        return f"{src}_G" in d

    def scalar(self, d, name, idx=None):
        """Clinical micro-F1 from per-example TP/FP/FN, BLEU-4 from per-example n-gram counts
        (corpus BLEU of the resample; the toolkit's value up to its smoothing constants),
        ROUGE-L and CIDEr as means of the toolkit's per-example scores."""
        src = next(s for s in self.SOURCES if name.startswith(s + "_"))
        metric = name[len(src) + 1:]
        if not self._ok(d, src):
            return None
        c = weights(d, idx)
        if metric == "clinical_f1":
            return M.f1_from_counts(*(float(np.dot(c, d[f"{src}_{k}"])) for k in ("tp", "fp", "fn")))
        if metric == "bleu_4":
            cor, gue = c @ d[f"{src}_bleu_correct"], c @ d[f"{src}_bleu_guess"]
            hl, rl = c @ d[f"{src}_bleu_len"]
            if np.any(cor == 0) or np.any(gue == 0):
                return 0.0
            bp = 1.0 if hl >= rl else float(np.exp(1 - rl / hl))
            return float(bp * np.exp(np.mean(np.log(cor / gue))))
        return wmean(d[f"{src}_{metric}"], c)

    def full(self, d, ctx):
        out: dict[str, Any] = {"n": int(len(d["sid"])), "target": ctx.report_target,
                               "tokenizer": "pycocoevalcap PTBTokenizer"}
        labels = list(d["labels"][0]) if len(d["labels"]) else []
        for src in self.SOURCES:
            if not self._ok(d, src):
                out[src] = None
                continue
            sc = self.coco.score(list(d["ref_tok"]), list(d[f"{src}_tok"]), meteor=self.meteor)
            res = {k: sc[k] for k in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "meteor") if k in sc}
            raw_h = list(d[f"{src}_text"])
            raw_r = [plain_text(ctx.studies[q].findings, ctx.studies[q].impression, ctx.studies[q].report,
                                ctx.report_target) for q in d["sid"]]
            res["sacrebleu"] = M.sacrebleu_bleu(raw_h, raw_r)
            res["rouge_score_l_f1"] = M.rouge_score_l(raw_h, raw_r)["rouge_l_f1"]
            res["clinical"] = M.multilabel_prf([set(x) for x in d["ref_sets"]], [set(x) for x in d[f"{src}_sets"]], labels)
            res["mean_length_tokens"] = float(np.mean([len(t.split()) for t in d[f"{src}_tok"]]))
            out[src] = res
        out["reference_mean_length_tokens"] = float(np.mean([len(t.split()) for t in d["ref_tok"]])) if len(d["ref_tok"]) else None
        return out


# -- extraction -------------------------------------------------------------------------------


class ExtractionEval(Evaluator):
    """The extractor against the manifest's labels; ``records[q]`` holds the study-level
    assertions {concept: assertion} of test study q.  Scored over the label concepts
    with at least one positive test study (macro-F1 over a concept nobody has is 0/0)."""

    task = "extraction"
    SYSTEMS = ("present", "u_ones")
    primary = ("present_micro_f1", "present_macro_f1", "u_ones_micro_f1")

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def data(self, qids, records, ctx):
        L = self.labels
        G = np.array([[ctx.studies[q].labels.get(c, 0) for c in L] for q in qids], float).reshape(len(qids), len(L))
        d: Data = {"sid": np.array(qids, dtype=object), "G": G}
        for name, keep in (("present", {"present"}), ("u_ones", {"present", "uncertain"})):
            d[f"{name}_P"] = np.array([[records[q].get(c) in keep for c in L] for q in qids], float).reshape(len(qids), len(L))
        return d

    def scalar(self, d, name, idx=None):
        sysname = "u_ones" if name.startswith("u_ones") else "present"
        metric = name[len(sysname) + 1:]
        c = weights(d, idx)
        G, P = d["G"], d[f"{sysname}_P"]
        tp, fp, fn = c @ (G * P), c @ ((1 - G) * P), c @ (G * (1 - P))
        if metric == "micro_f1":
            return M.f1_from_counts(float(tp.sum()), float(fp.sum()), float(fn.sum()))
        if metric == "macro_f1":  # over the concepts with a positive example in the resample
            f = [M.f1_from_counts(float(tp[j]), float(fp[j]), float(fn[j])) for j in range(G.shape[1]) if tp[j] + fn[j] > 0]
            return float(np.mean(f)) if f else None
        raise KeyError(name)

    def full(self, d, ctx):
        gold = [{c for j, c in enumerate(self.labels) if row[j]} for row in d["G"]]
        out: dict[str, Any] = {"n": int(len(d["sid"])), "labels": self.labels}
        for name in self.SYSTEMS:
            pred = [{c for j, c in enumerate(self.labels) if row[j]} for row in d[f"{name}_P"]]
            out[name] = M.multilabel_prf(gold, pred, self.labels)
        out["policies"] = {"present": "uncertain mentions count negative (kgrag's default)",
                           "u_ones": "uncertain mentions count positive (CheXpert U-Ones)"}
        return out
