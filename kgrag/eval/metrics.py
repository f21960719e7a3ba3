"""Evaluation metrics, computed by the standard libraries.

Where a library has the metric it is the one used (pure-Python definitions of each
live in :mod:`kgrag.eval.reference`, and the tests hold both to hand-computed values):

- classification, VQA, diagnosis, extraction: scikit-learn (``roc_auc_score``,
  ``accuracy_score``, ``balanced_accuracy_score``, ``precision_recall_fscore_support``,
  ``calibration_curve``; ``top_k_accuracy_score`` and
  ``label_ranking_average_precision_score`` for exact-pair retrieval);
- report generation: pycocoevalcap (the COCO caption toolkit) for BLEU-1..4,
  METEOR 1.5, ROUGE-L and CIDEr, every text first through its PTB tokenizer
  (Stanford CoreNLP 3.4.1 ``PTBTokenizer -preserveLines -lowerCase``, punctuation
  dropped; Java runs it and METEOR).  pycocoevalcap's CIDEr is CIDEr-D (clipped
  n-gram counts, Gaussian length penalty σ = 6, ×10) with the document frequencies
  of the evaluated references.  sacrebleu's corpus BLEU (its 13a tokenizer, scaled to
  0–1 here) and rouge-score's ROUGE-L F1 (β = 1, its own tokenizer, no stemming) are
  reported beside them;
- resampling: SciPy's ``permutation_test`` for the paired test.

Retrieval over ranked lists (Recall@k, MRR, hit@k) has no library version with a
relevant *set* per query; it is computed here in NumPy and equals the reference.
ECE has none either: it is computed from ``calibration_curve``'s bins and counts.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kgrag.errors import InputError, MissingDependencyError

# -- classification --------------------------------------------------------------------


def _sk():
    from kgrag.deps import require

    return require("sklearn.metrics")


def auc(y: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC; None when ``y`` holds one class only."""
    y = np.asarray(y, int)
    if len(np.unique(y)) < 2:
        return None
    return float(_sk().roc_auc_score(y, np.asarray(scores, float)))


def binary_metrics(y: Sequence[int], pred: Sequence[int]) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall, F1 of the positive class."""
    sk = _sk()
    y, pred = np.asarray(y, int), np.asarray(pred, int)
    if len(y) == 0:
        raise InputError("no examples to score", fix="check that the test split has labelled studies")
    p, r, f, _ = sk.precision_recall_fscore_support(y, pred, average="binary", pos_label=1, zero_division=0)
    with np.errstate(all="ignore"):
        bal = float(sk.balanced_accuracy_score(y, pred)) if len(np.unique(y)) > 1 else float(sk.accuracy_score(y, pred))
    return {"accuracy": float(sk.accuracy_score(y, pred)), "balanced_accuracy": bal,
            "precision": float(p), "recall": float(r), "f1": float(f), "n": int(len(y)), "positives": int(y.sum())}


def calibration(y: Sequence[int], p: Sequence[float], n_bins: int = 10) -> dict[str, Any]:
    """ECE and the reliability curve over uniform bins ``[0, 1/B], (1/B, 2/B], …``.

    The curve is scikit-learn's ``calibration_curve``; ECE weighs each non-empty bin's
    |observed frequency − mean predicted probability| by its share of the examples."""
    from kgrag.deps import require

    cal = require("sklearn.calibration")
    y, p = np.asarray(y, int), np.clip(np.asarray(p, float), 0.0, 1.0)
    if len(y) == 0:
        return {"ece": None, "bins": [], "n": 0}
    bins = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(bins[1:-1], p)  # the binning calibration_curve uses
    counts = np.bincount(ids, minlength=n_bins)
    if len(np.unique(y)) < 2:  # calibration_curve needs both labels; the arithmetic is the same
        nz = counts > 0
        freq = np.bincount(ids, weights=y, minlength=n_bins)[nz] / counts[nz]
        conf = np.bincount(ids, weights=p, minlength=n_bins)[nz] / counts[nz]
    else:
        freq, conf = cal.calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    nz_bins = np.nonzero(counts)[0]
    w = counts[nz_bins] / len(y)
    return {"ece": float(np.sum(w * np.abs(freq - conf))), "n": int(len(y)), "n_bins": n_bins,
            "bins": [{"bin": int(b), "confidence": float(c), "frequency": float(f), "count": int(counts[b])}
                     for b, c, f in zip(nz_bins, conf, freq, strict=True)]}


def multilabel_prf(gold: Sequence[set[str]], pred: Sequence[set[str]], labels: Sequence[str]) -> dict[str, Any]:
    """Micro / macro precision, recall and F1 over concept sets, plus per-label scores
    (scikit-learn on the binarised example × label matrices)."""
    sk = _sk()
    labels = list(labels)
    if not labels:
        return {"labels": [], "micro_precision": None, "micro_recall": None, "micro_f1": None,
                "macro_precision": None, "macro_recall": None, "macro_f1": None, "per_label": {}}
    ix = {c: j for j, c in enumerate(labels)}

    def mat(sets: Sequence[set[str]]) -> np.ndarray:
        m = np.zeros((len(sets), len(labels)), int)
        for i, s in enumerate(sets):
            for c in s:
                if c in ix:
                    m[i, ix[c]] = 1
        return m

    G, P = mat(gold), mat(pred)
    out: dict[str, Any] = {"labels": labels, "n": len(gold)}
    for avg in ("micro", "macro"):
        p, r, f, _ = sk.precision_recall_fscore_support(G, P, average=avg, zero_division=0)
        out.update({f"{avg}_precision": float(p), f"{avg}_recall": float(r), f"{avg}_f1": float(f)})
    p, r, f, s = sk.precision_recall_fscore_support(G, P, average=None, zero_division=0)
    out["per_label"] = {c: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j])}
                        for c, j in ix.items()}
    return out


# -- retrieval ---------------------------------------------------------------------------


def first_ranks(ranked: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> np.ndarray:
    """1-based rank of the first relevant item per query (0 when none is retrieved)."""
    out = np.zeros(len(ranked), int)
    for q, (lst, rel) in enumerate(zip(ranked, relevant, strict=True)):
        for i, x in enumerate(lst, 1):
            if x in rel:
                out[q] = i
                break
    return out


def ranking_metrics(ranked: Sequence[Sequence[str]], relevant: Sequence[set[str]],
                    ks: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """Per-query vectors and their means: ``recall@k`` = |rel ∩ top-k| / |rel| (queries with
    no relevant item are left out of it), ``hit@k`` (a relevant item in the top k), and
    the reciprocal rank of the first relevant item (0 when none is in the list)."""
    r = first_ranks(ranked, relevant)
    rr = np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0)
    per: dict[str, np.ndarray] = {"rr": rr}
    for k in ks:
        per[f"hit@{k}"] = ((r > 0) & (r <= k)).astype(float)
        per[f"recall@{k}"] = np.array([len(set(lst[:k]) & rel) / len(rel) if rel else np.nan
                                       for lst, rel in zip(ranked, relevant, strict=True)])
    means = {k: (None if np.all(np.isnan(v)) else float(np.nanmean(v))) for k, v in per.items()}
    return {"per_query": per, "mean": means}


def pair_retrieval(sims: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Exact-pair retrieval: ``sims[i, j]`` scores query i against item j and item i is
    query i's only match.  Recall@k (= top-k accuracy with one relevant item) from
    ``top_k_accuracy_score``, MRR from ``label_ranking_average_precision_score`` (with
    one relevant label per row it is the reciprocal rank; ties count against)."""
    sk = _sk()
    sims = np.asarray(sims, float)
    n = sims.shape[0]
    if n < 2:
        return {}
    y = np.arange(n)
    out = {f"recall@{k}": float(sk.top_k_accuracy_score(y, sims, k=k, labels=y)) for k in ks if k < n}
    out["mrr"] = float(sk.label_ranking_average_precision_score(np.eye(n, dtype=int), sims))
    out["n"] = n
    out.update({f"chance_recall@{k}": min(1.0, k / n) for k in ks})
    return out


# -- report generation -------------------------------------------------------------------


def _java() -> str:
    exe = shutil.which("java")
    if exe is None:
        raise MissingDependencyError("pycocoevalcap's PTB tokenizer and METEOR need Java, which is not on PATH",
                                     fix="install a Java runtime (e.g. apt-get install openjdk-17-jre-headless)")
    return exe


def ptb_tokenize(texts: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTB tokenizer: {id: [text, ...]} → {id: [tokenized, ...]}."""
    from kgrag.deps import require

    _java()
    tok = require("pycocoevalcap.tokenizer.ptbtokenizer")
    data = {k: [{"caption": t if t.strip() else "empty"} for t in v] for k, v in texts.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        return tok.PTBTokenizer().tokenize(data)


def coco_metrics(hyps: Mapping[str, str], refs: Mapping[str, Sequence[str]], *, meteor: bool = True) -> dict[str, Any]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr from pycocoevalcap on PTB-tokenized text
    (one or more references per example).

    Returns corpus scores and per-example scores (``per_example[metric][i]`` follows
    ``ids``).  BLEU is the toolkit's corpus BLEU (closest reference length); its
    per-example BLEU is the sentence BLEU."""
    ids = sorted(hyps)
    if not ids:
        raise InputError("no generated texts to score", fix="check that the pipeline answered the test queries")
    if set(ids) != set(refs):
        raise InputError("hypotheses and references name different examples", fix="pass the same ids to both")
    res = ptb_tokenize({i: [hyps[i]] for i in ids})
    gts = ptb_tokenize({i: list(refs[i]) for i in ids})
    sc = CocoScorer()
    try:
        out = sc.score_dicts({j: gts[i] for j, i in enumerate(ids)}, {j: res[i] for j, i in enumerate(ids)},
                             meteor=meteor)
    finally:
        sc.close()
    out["tokenizer"] = "pycocoevalcap PTBTokenizer (Stanford CoreNLP 3.4.1, lower-cased, punctuation removed)"
    out["ids"] = ids
    out["tokenized"] = {"hyps": {i: res[i][0] for i in ids}, "refs": {i: gts[i] for i in ids}}
    return out


class CocoScorer:
    """pycocoevalcap scorers over texts tokenized once by its PTB tokenizer, with one
    METEOR (Java) process reused for every call; :meth:`close` stops it."""

    def __init__(self) -> None:
        self._meteor: Any = None

    @staticmethod
    def tokenize(texts: Sequence[str]) -> dict[str, str]:
        """text → PTB-tokenized text, for the distinct ``texts`` (one Java call)."""
        uniq = sorted(set(texts))
        if not uniq:
            return {}
        tok = ptb_tokenize({str(i): [t] for i, t in enumerate(uniq)})
        return {t: tok[str(i)][0] for i, t in enumerate(uniq)}

    def bleu(self, refs_tok: Sequence[str], hyps_tok: Sequence[str]) -> list[float]:
        from kgrag.deps import require

        Bleu = require("pycocoevalcap.bleu.bleu").Bleu
        gts = {i: [r] for i, r in enumerate(refs_tok)}
        res = {i: [h] for i, h in enumerate(hyps_tok)}
        with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its counts on stdout
            b, _ = Bleu(4).compute_score(gts, res)
        return [float(x) for x in b]

    def score(self, refs_tok: Sequence[str], hyps_tok: Sequence[str], *, meteor: bool = True) -> dict[str, Any]:
        """Corpus BLEU-1..4, ROUGE-L, CIDEr (and METEOR) and their per-example values,
        one reference per example (examples are positional)."""

        if len(refs_tok) != len(hyps_tok) or not refs_tok:
            raise InputError("references and hypotheses differ in number or are empty", fix="pass aligned lists")
        return self.score_dicts({i: [r] for i, r in enumerate(refs_tok)}, {i: [h] for i, h in enumerate(hyps_tok)},
                                meteor=meteor)

    def score_dicts(self, gts: Mapping[Any, Sequence[str]], res: Mapping[Any, Sequence[str]], *,
                    meteor: bool = True) -> dict[str, Any]:
        """The toolkit's own input: {example: [tokenized reference, ...]}, {example: [tokenized hypothesis]}."""
        from kgrag.deps import require

        gts = {k: [r if r.strip() else "empty" for r in v] for k, v in gts.items()}
        res = {k: [h if h.strip() else "empty" for h in v] for k, v in res.items()}
        out: dict[str, Any] = {"per_example": {}}
        with contextlib.redirect_stdout(io.StringIO()):
            b, bs = require("pycocoevalcap.bleu.bleu").Bleu(4).compute_score(gts, res)
        for k in range(4):
            out[f"bleu_{k + 1}"] = float(b[k])
            out["per_example"][f"bleu_{k + 1}"] = [float(x) for x in bs[k]]
        r, rs = require("pycocoevalcap.rouge.rouge").Rouge().compute_score(gts, res)
        out["rouge_l"], out["per_example"]["rouge_l"] = float(r), [float(x) for x in rs]
        c, cs = require("pycocoevalcap.cider.cider").Cider().compute_score(gts, res)
        out["cider"], out["per_example"]["cider"] = float(c), [float(x) for x in cs]
        if meteor:
            if self._meteor is None:
                _java()
                self._meteor = require("pycocoevalcap.meteor.meteor").Meteor()
            mv, ms = self._meteor.compute_score(gts, res)
            out["meteor"], out["per_example"]["meteor"] = float(mv), [float(x) for x in ms]
        return out

    def close(self) -> None:
        if self._meteor is not None:
            self._meteor.__del__()  # stops the Java process (safe to run again at exit)
            self._meteor = None


def sacrebleu_bleu(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """sacrebleu corpus BLEU with its defaults (13a tokenizer, exponential smoothing), on a 0–1 scale."""
    from kgrag.deps import require

    sb = require("sacrebleu")
    bleu = sb.metrics.BLEU()
    r = bleu.corpus_score(list(hyps), [list(refs)])
    return {"bleu": r.score / 100.0, "precisions": [p / 100.0 for p in r.precisions], "bp": r.bp,
            "signature": str(bleu.get_signature())}


def rouge_score_l(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """rouge-score's ROUGE-L (F1, β = 1) averaged over examples."""
    from kgrag.deps import require

    rs = require("rouge_score.rouge_scorer")
    sc = rs.RougeScorer(["rougeL"], use_stemmer=False)
    f = [sc.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)]
    return {"rouge_l_f1": float(np.mean(f)) if f else None, "per_example": [float(x) for x in f]}


# -- resampling --------------------------------------------------------------------------
# Bootstrap and permutation resamples recompute a metric 10^3–10^4 times; scikit-learn's
# per-call overhead (about 2 ms for roc_auc_score) would make that minutes.  Inside the
# resampling loops AUC is therefore the Mann–Whitney identity on SciPy's mid-ranks and
# F1 comes from summed counts; tests hold both equal to scikit-learn.


def auc_fast(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋) with mid-ranks R (NaN without both classes)."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(np.asarray(s, float))
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))



def bootstrap_ci(stat: Callable[[np.ndarray], float | None], n: int, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap CI of ``stat(indices)`` over ``n`` examples resampled with
    replacement.  Resamples where the statistic is undefined (None / NaN, e.g. an AUC
    without both classes) are dropped and counted."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        v = stat(rng.integers(0, n, n))
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            vals.append(float(v))
    if not vals:
        return {"low": None, "high": None, "n_boot": n_boot, "n_valid": 0, "seed": seed, "level": level}
    a = (1 - level) / 2 * 100
    return {"low": float(np.percentile(vals, a)), "high": float(np.percentile(vals, 100 - a)), "n_boot": n_boot,
            "n_valid": len(vals), "seed": seed, "level": level, "method": "percentile"}


def paired_test(stat: Callable[[np.ndarray, np.ndarray], float | None], n: int, *, n_resamples: int = 2000,
                seed: int = 0, n_boot: int = 1000, level: float = 0.95) -> dict[str, Any]:
    """Paired comparison of two systems A and B scored on the same ``n`` examples.

    ``stat(ia, ib)`` computes metric(A) − metric(B) where the examples of A are rows
    ``ia`` and those of B rows ``ib`` of the callers' stacked outputs (rows 0..n−1 are A,
    n..2n−1 are B).  The p-value is SciPy's ``permutation_test`` with
    ``permutation_type="samples"``: under the null the two systems' outputs are
    exchangeable per example, so each example's A and B are swapped at random (exact
    over all 2^n swaps when 2^n ≤ ``n_resamples``); two-sided.  The CI of the difference
    is a paired percentile bootstrap (the same resampled examples for both)."""
    from kgrag.deps import require

    st = require("scipy.stats")
    ia, ib = np.arange(n), np.arange(n) + n
    obs = stat(ia, ib)
    if obs is None or (isinstance(obs, float) and math.isnan(obs)):
        return {"difference": None, "p_value": None, "ci": None, "n": n}

    def s(x: np.ndarray, y: np.ndarray) -> float:
        v = stat(x.astype(int), y.astype(int))
        return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    res = st.permutation_test((ia.astype(float), ib.astype(float)), s, permutation_type="samples",
                              vectorized=False, n_resamples=n_resamples, alternative="two-sided",
                              random_state=np.random.default_rng(seed))
    ci = bootstrap_ci(lambda idx: stat(idx, idx + n), n, n_boot=n_boot, seed=seed, level=level)
    exact = 2**n <= n_resamples
    return {"difference": float(obs), "p_value": float(res.pvalue), "ci": ci, "n": n,
            "test": "paired permutation (swap A/B per example), two-sided" + (", exact" if exact else ""),
            "n_resamples": None if exact else n_resamples, "seed": seed}
