"""Pure-Python references of every evaluation metric (no NumPy, no libraries).

:mod:`kgrag.eval.metrics` computes the numbers a run reports with scikit-learn,
pycocoevalcap, sacrebleu, rouge-score and SciPy.  The functions here define the
same quantities from first principles, so the tests can check the libraries and
the wrappers against hand-computed values and against each other.  They are slow
(quadratic AUC, exhaustive permutations) and meant for small inputs.

Conventions shared with :mod:`kgrag.eval.metrics`:

- AUC is the probability that a random positive scores above a random negative,
  ties counting one half (Mann–Whitney U / (n_pos · n_neg)); ``None`` without both classes.
- A division by zero in precision / recall / F1 gives 0 (scikit-learn's ``zero_division=0``).
- Calibration bins are ``[0, 1/B], (1/B, 2/B], …, ((B-1)/B, 1]`` (scikit-learn's
  ``calibration_curve(strategy="uniform")``); ECE = Σ_b (n_b / n) · |mean(y)_b − mean(p)_b|.
- Retrieval: a ranked list of ids per query and a set of relevant ids; the rank of an
  item is its 1-based position in the list.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

# -- classification ------------------------------------------------------------------


def auc(y: Sequence[int], s: Sequence[float]) -> float | None:
    pos = [v for t, v in zip(y, s, strict=True) if t]
    neg = [v for t, v in zip(y, s, strict=True) if not t]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def confusion(y: Sequence[int], pred: Sequence[int]) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) for binary labels."""
    tp = sum(1 for t, p in zip(y, pred, strict=True) if t and p)
    fp = sum(1 for t, p in zip(y, pred, strict=True) if not t and p)
    fn = sum(1 for t, p in zip(y, pred, strict=True) if t and not p)
    tn = sum(1 for t, p in zip(y, pred, strict=True) if not t and not p)
    return tp, fp, fn, tn


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def accuracy(y: Sequence[int], pred: Sequence[int]) -> float:
    return sum(1 for t, p in zip(y, pred, strict=True) if bool(t) == bool(p)) / len(y)


def balanced_accuracy(y: Sequence[int], pred: Sequence[int]) -> float:
    """Mean recall of the two classes (a class absent from ``y`` is left out)."""
    tp, fp, fn, tn = confusion(y, pred)
    recalls = []
    if tp + fn:
        recalls.append(tp / (tp + fn))
    if tn + fp:
        recalls.append(tn / (tn + fp))
    return sum(recalls) / len(recalls)


def multilabel_prf(gold: Sequence[set[str]], pred: Sequence[set[str]], labels: Sequence[str]) -> dict[str, float]:
    """Micro and macro precision / recall / F1 over ``labels`` (concept sets per example).
    Macro averages the per-label scores over every label in ``labels``."""
    counts = {c: [0, 0, 0] for c in labels}
    for g, p in zip(gold, pred, strict=True):
        for c in labels:
            counts[c][0] += (c in g) and (c in p)
            counts[c][1] += (c not in g) and (c in p)
            counts[c][2] += (c in g) and (c not in p)
    tot = [sum(v[i] for v in counts.values()) for i in range(3)]
    mp, mr, mf = prf(*tot)
    per = [prf(*counts[c]) for c in labels]
    n = len(labels)
    return {"micro_precision": mp, "micro_recall": mr, "micro_f1": mf,
            "macro_precision": sum(x[0] for x in per) / n, "macro_recall": sum(x[1] for x in per) / n,
            "macro_f1": sum(x[2] for x in per) / n}


# -- calibration ---------------------------------------------------------------------


def bin_of(p: float, n_bins: int) -> int:
    """Index of the bin ``((b-1)/B, b/B]`` holding ``p`` (``p = 0`` is in bin 0)."""
    for b in range(n_bins - 1):
        if p <= (b + 1) / n_bins:
            return b
    return n_bins - 1


def reliability(y: Sequence[int], p: Sequence[float], n_bins: int = 10) -> list[tuple[int, float, float, int]]:
    """Non-empty bins as (bin, mean predicted p, observed frequency, count)."""
    groups: dict[int, list[tuple[int, float]]] = {}
    for t, q in zip(y, p, strict=True):
        groups.setdefault(bin_of(q, n_bins), []).append((t, q))
    out = []
    for b in sorted(groups):
        g = groups[b]
        out.append((b, sum(q for _, q in g) / len(g), sum(t for t, _ in g) / len(g), len(g)))
    return out


def ece(y: Sequence[int], p: Sequence[float], n_bins: int = 10) -> float:
    n = len(y)
    return sum(c / n * abs(freq - conf) for _, conf, freq, c in reliability(y, p, n_bins))


# -- retrieval ------------------------------------------------------------------------


def first_rank(ranked: Sequence[str], relevant: set[str]) -> int | None:
    for i, x in enumerate(ranked, 1):
        if x in relevant:
            return i
    return None


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float | None:
    """|relevant ∩ top-k| / |relevant| (None when nothing is relevant)."""
    if not relevant:
        return None
    return len(set(ranked[:k]) & relevant) / len(relevant)


def hit_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    r = first_rank(ranked, relevant)
    return 1.0 if r is not None and r <= k else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: set[str]) -> float:
    r = first_rank(ranked, relevant)
    return 0.0 if r is None else 1.0 / r


# -- report generation (whitespace tokens; tokenize first) -------------------------------


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu_stats(hyp: Sequence[str], ref: Sequence[str], n: int = 4) -> tuple[list[int], list[int], int, int]:
    """Clipped n-gram matches and hypothesis n-gram counts for k = 1..n, hyp and ref lengths."""
    correct, guess = [], []
    for k in range(1, n + 1):
        h, r = ngrams(hyp, k), ngrams(ref, k)
        correct.append(sum(min(c, r[g]) for g, c in h.items()))
        guess.append(max(0, len(hyp) - k + 1))
    return correct, guess, len(hyp), len(ref)


def corpus_bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n (Papineni et al. 2002): per k the geometric mean of the clipped
    precisions of orders 1..k over the whole corpus, times the brevity penalty
    exp(1 − r/c) when the total hypothesis length c is below the reference length r.
    One reference per hypothesis."""
    stats = [bleu_stats(h, r, n) for h, r in zip(hyps, refs, strict=True)]
    return bleu_from_stats(stats, n)


def bleu_from_stats(stats: Sequence[tuple[list[int], list[int], int, int]], n: int = 4) -> list[float]:
    correct = [sum(s[0][k] for s in stats) for k in range(n)]
    guess = [sum(s[1][k] for s in stats) for k in range(n)]
    c, r = sum(s[2] for s in stats), sum(s[3] for s in stats)
    bp = 1.0 if c >= r else (math.exp(1 - r / c) if c else 0.0)
    out, logsum = [], 0.0
    for k in range(n):
        if correct[k] == 0 or guess[k] == 0:
            out.extend([0.0] * (n - k))
            break
        logsum += math.log(correct[k] / guess[k])
        out.append(bp * math.exp(logsum / (k + 1)))
    return out


def lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(hyp: Sequence[str], ref: Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L F-measure (Lin 2004): P = LCS/|hyp|, R = LCS/|ref|,
    F = (1 + β²)PR / (R + β²P).  β = 1.2 is pycocoevalcap's; β = 1 is rouge-score's F1."""
    if not hyp or not ref:
        return 0.0
    m = lcs(hyp, ref)
    if m == 0:
        return 0.0
    p, r = m / len(hyp), m / len(ref)
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def cider_d(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]], n: int = 4,
            sigma: float = 6.0) -> list[float]:
    """CIDEr-D per hypothesis (Vedantam et al. 2015), as pycocoevalcap computes it.

    TF-IDF vectors per n-gram order with document frequency df(g) = number of
    examples whose references contain g and idf = log(N) − log(max(1, df));
    per order, Σ_g min(h_g, r_g)·r_g / (‖h‖·‖r‖) (the clipped cosine), times the
    length penalty exp(−(|hyp| − |ref|)² / (2σ²)); averaged over orders and
    references, times 10.
    """
    N = len(hyps)
    df: Counter = Counter()
    for rs in refs:
        df.update({g for r in rs for k in range(1, n + 1) for g in ngrams(r, k)})
    log_n = math.log(N) if N else 0.0

    def vec(tokens: Sequence[str]) -> list[dict[tuple[str, ...], float]]:
        return [{g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in ngrams(tokens, k).items()}
                for k in range(1, n + 1)]

    out = []
    for h, rs in zip(hyps, refs, strict=True):
        vh = vec(h)
        total = 0.0
        for r in rs:
            vr = vec(r)
            pen = math.exp(-((len(h) - len(r)) ** 2) / (2 * sigma**2))
            per = 0.0
            for k in range(n):
                nh = math.sqrt(sum(v * v for v in vh[k].values()))
                nr = math.sqrt(sum(v * v for v in vr[k].values()))
                dot = sum(min(v, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, v in vh[k].items())
                if nh and nr:
                    dot /= nh * nr
                per += dot * pen
            total += per / n
        out.append(10.0 * total / len(rs))
    return out


def meteor_exact(hyp: Sequence[str], ref: Sequence[str], alpha: float = 0.9, beta: float = 3.0,
                 gamma: float = 0.5) -> float:
    """METEOR with exact unigram matching only (Banerjee & Lavie 2005 parameters):
    F_mean = P·R / (α·P + (1 − α)·R), penalty = γ·(chunks / matches)^β,
    score = F_mean · (1 − penalty).  The alignment maps each hypothesis token to the
    first unused equal reference token, left to right.

    This is the published formula, not METEOR 1.5: the jar pycocoevalcap calls also
    matches stems, synonyms and paraphrases, weighs function words apart, and uses
    tuned parameters (α 0.85, β 0.2, γ 0.6, δ 0.75), so its numbers differ.
    """
    used: set[int] = set()
    align: list[tuple[int, int]] = []
    for i, t in enumerate(hyp):
        for j, u in enumerate(ref):
            if j not in used and t == u:
                used.add(j)
                align.append((i, j))
                break
    m = len(align)
    if m == 0:
        return 0.0
    p, r = m / len(hyp), m / len(ref)
    fmean = p * r / (alpha * p + (1 - alpha) * r)
    chunks = 1
    for (i0, j0), (i1, j1) in itertools.pairwise(align):
        if not (i1 == i0 + 1 and j1 == j0 + 1):
            chunks += 1
    return fmean * (1 - gamma * (chunks / m) ** beta)


# -- resampling -------------------------------------------------------------------------


def paired_permutation_p(a: Sequence[float], b: Sequence[float],
                         stat: Callable[[Sequence[float], Sequence[float]], float] | None = None) -> float:
    """Exact two-sided p-value of the paired permutation (swap) test: every one of the
    2^n ways of swapping a_i and b_i; p = share of swaps with |stat| ≥ |observed|.
    ``stat`` defaults to mean(a) − mean(b).  For small n only."""
    stat = stat or (lambda x, y: sum(x) / len(x) - sum(y) / len(y))
    obs = abs(stat(a, b))
    hits = total = 0
    for mask in itertools.product((False, True), repeat=len(a)):
        x = [bi if m else ai for ai, bi, m in zip(a, b, mask, strict=True)]
        y = [ai if m else bi for ai, bi, m in zip(a, b, mask, strict=True)]
        total += 1
        hits += abs(stat(x, y)) >= obs - 1e-12
    return hits / total


def percentile(xs: Iterable[float], q: float) -> float:
    """Linear-interpolation percentile (NumPy's default), q in [0, 100]."""
    v = sorted(xs)
    pos = (len(v) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def mean(xs: Iterable[float]) -> float:
    v = list(xs)
    return sum(v) / len(v)


def macro(values: Mapping[str, float | None]) -> float | None:
    v = [x for x in values.values() if x is not None]
    return sum(v) / len(v) if v else None
