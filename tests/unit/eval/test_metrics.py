"""Evaluation metrics: the pure-Python references against values computed by hand, and the
library-backed functions of kgrag.eval.metrics against both."""

import math
import shutil

import numpy as np
import pytest

from kgrag.eval import metrics as M
from kgrag.eval import reference as R

# -- classification ----------------------------------------------------------------------


def test_auc_by_hand_with_a_tie():
    # positives 0.9, 0.4; negatives 0.4, 0.2: wins 1 + 1 + 0.5 (tie) + 1 over 4 pairs
    y, s = [1, 0, 1, 0], [0.9, 0.4, 0.4, 0.2]
    assert R.auc(y, s) == pytest.approx(0.875)
    assert M.auc(y, s) == pytest.approx(0.875)
    assert M.auc_fast(np.array(y), np.array(s)) == pytest.approx(0.875)
    assert R.auc([1, 1], [0.2, 0.3]) is None and M.auc([1, 1], [0.2, 0.3]) is None
    assert math.isnan(M.auc_fast(np.array([0, 0]), np.array([0.1, 0.2])))


def test_auc_fast_equals_sklearn_on_random_data():
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        s = np.round(rng.random(60), 1)  # many ties
        assert M.auc_fast(y, s) == pytest.approx(M.auc(y, s), abs=1e-12)
        assert R.auc(list(y), list(s)) == pytest.approx(M.auc(y, s), abs=1e-12)


def test_binary_metrics_by_hand():
    y, pred = [1, 1, 0, 0, 0], [1, 0, 0, 0, 1]
    # TPR 1/2, TNR 2/3; tp 1 fp 1 fn 1
    assert R.balanced_accuracy(y, pred) == pytest.approx((0.5 + 2 / 3) / 2)
    assert R.prf(*R.confusion(y, pred)[:3]) == pytest.approx((0.5, 0.5, 0.5))
    b = M.binary_metrics(y, pred)
    assert b["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert b["accuracy"] == pytest.approx(0.6) == R.accuracy(y, pred)
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((0.5, 0.5, 0.5))


def test_multilabel_prf_by_hand():
    gold, pred, labels = [{"a", "b"}, {"a"}], [{"a"}, {"a", "c"}], ["a", "b", "c"]
    # a: tp 2; b: fn 1; c: fp 1 -> micro P = R = F = 2/3; per-label F1 1, 0, 0
    ref = R.multilabel_prf(gold, pred, labels)
    assert ref["micro_f1"] == pytest.approx(2 / 3) and ref["macro_f1"] == pytest.approx(1 / 3)
    lib = M.multilabel_prf(gold, pred, labels)
    for k in ("micro_precision", "micro_recall", "micro_f1", "macro_precision", "macro_recall", "macro_f1"):
        assert lib[k] == pytest.approx(ref[k]), k
    assert lib["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_ece_and_reliability_by_hand():
    y, p = [1, 0, 1, 1], [0.05, 0.15, 0.85, 0.95]
    # one example per bin: (0.95 + 0.15 + 0.15 + 0.05) / 4
    assert R.ece(y, p) == pytest.approx(0.325)
    cal = M.calibration(y, p)
    assert cal["ece"] == pytest.approx(0.325)
    assert [b["bin"] for b in cal["bins"]] == [0, 1, 8, 9]
    # two bins [0, 0.5], (0.5, 1]: 0.5 sits in the first; only (0.9, y=1) is off, by 0.1, weight 1/3
    y2, p2 = [0, 1, 1], [0.5, 0.5, 0.9]
    assert R.ece(y2, p2, 2) == pytest.approx(0.1 / 3)
    assert M.calibration(y2, p2, n_bins=2)["ece"] == pytest.approx(0.1 / 3)
    assert R.reliability(y2, p2, 2) == [(0, 0.5, 0.5, 2), (1, 0.9, 1.0, 1)]


def test_calibration_with_one_class_and_random_data():
    assert M.calibration([1, 1], [0.2, 0.8])["ece"] == pytest.approx((0.8 + 0.2) / 2)
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 300), rng.random(300)
    assert M.calibration(y, p)["ece"] == pytest.approx(R.ece(list(y), list(p)), abs=1e-12)


# -- retrieval ----------------------------------------------------------------------------


def test_ranking_metrics_by_hand():
    ranked, rel = [["a", "b", "c", "d"], ["x", "y"]], [{"c", "z"}, set()]
    r = M.ranking_metrics(ranked, rel, ks=(1, 5))
    # query 1: first relevant at rank 3; one of two relevant in the top 5; query 2: nothing relevant
    assert list(r["per_query"]["rr"]) == pytest.approx([1 / 3, 0.0])
    assert r["mean"]["hit@1"] == 0.0 and r["mean"]["hit@5"] == 0.5
    assert r["mean"]["recall@5"] == pytest.approx(0.5)  # the query without relevant items is left out
    assert R.reciprocal_rank(ranked[0], rel[0]) == pytest.approx(1 / 3)
    assert R.recall_at_k(ranked[0], rel[0], 5) == 0.5 and R.recall_at_k(ranked[1], rel[1], 5) is None
    assert R.hit_at_k(ranked[0], rel[0], 2) == 0.0 and R.hit_at_k(ranked[0], rel[0], 3) == 1.0


def test_pair_retrieval_against_the_reference():
    rng = np.random.default_rng(1)
    sims = rng.standard_normal((30, 30))
    out = M.pair_retrieval(sims)
    ids = [str(j) for j in range(30)]
    ranked = [[ids[j] for j in np.argsort(-sims[i], kind="stable")] for i in range(30)]
    for k in (1, 5, 10):
        assert out[f"recall@{k}"] == pytest.approx(np.mean([R.hit_at_k(ranked[i], {ids[i]}, k) for i in range(30)]))
    assert out["mrr"] == pytest.approx(np.mean([R.reciprocal_rank(ranked[i], {ids[i]}) for i in range(30)]))
    assert out["chance_recall@10"] == pytest.approx(10 / 30)


# -- report generation ---------------------------------------------------------------------

HYP, REF = "the cat sat on the mat".split(), "the cat is on the mat".split()


def test_bleu_by_hand():
    # clipped precisions 5/6, 3/5, 1/4, 0/3; equal lengths (no brevity penalty)
    b = R.corpus_bleu([HYP], [REF])
    assert b[0] == pytest.approx(5 / 6)
    assert b[1] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert b[2] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))
    assert b[3] == 0.0
    # brevity penalty: a 3-token hypothesis against a 6-token reference, all unigrams right
    short = R.corpus_bleu([["the", "cat", "is"]], [REF], n=1)
    assert short[0] == pytest.approx(math.exp(1 - 6 / 3))


def test_rouge_l_and_meteor_by_hand():
    assert R.lcs(HYP, REF) == 5
    p, r = 1.0, 0.5  # "the cat sat" against "the cat sat on the mat"
    assert R.rouge_l(["the", "cat", "sat"], "the cat sat on the mat".split()) == pytest.approx(
        (1 + 1.44) * p * r / (r + 1.44 * p))
    assert R.rouge_l(["the", "cat", "sat"], "the cat sat on the mat".split(), beta=1.0) == pytest.approx(2 / 3)
    # METEOR (exact matches): 5 matches in 2 chunks, P = R = 5/6, penalty 0.5 (2/5)^3
    assert R.meteor_exact(HYP, REF) == pytest.approx(5 / 6 * (1 - 0.5 * (2 / 5) ** 3))
    assert R.meteor_exact(["a"], ["b"]) == 0.0


def test_cider_d_by_hand():
    # two examples, each hypothesis equal to its reference, no shared n-gram: idf = log 2 for
    # every n-gram, cosine 1 for orders 1 and 2, nothing for 3 and 4: 10 * (1 + 1) / 4
    hyps, refs = [["a", "b"], ["c", "d"]], [[["a", "b"]], [["c", "d"]]]
    assert R.cider_d(hyps, refs) == pytest.approx([5.0, 5.0])
    # one example: log(N) = 0 makes every weight 0
    assert R.cider_d([["a", "b"]], [[["a", "b"]]]) == [0.0]


def test_library_scorers_on_pretokenized_text_equal_the_references():
    pytest.importorskip("pycocoevalcap")
    hyps = ["the cat sat on the mat", "the dog ran in the park today", "no acute findings"]
    refs = ["the cat is on the mat", "the dog ran in a park", "no acute cardiopulmonary findings"]
    sc = M.CocoScorer()
    out = sc.score(refs, hyps, meteor=False)
    toks_h, toks_r = [h.split() for h in hyps], [r.split() for r in refs]
    ref_bleu = R.corpus_bleu(toks_h, toks_r)
    for k in range(4):
        assert out[f"bleu_{k + 1}"] == pytest.approx(ref_bleu[k], abs=1e-6)
    assert out["per_example"]["rouge_l"] == pytest.approx([R.rouge_l(h, r) for h, r in zip(toks_h, toks_r, strict=True)])
    assert out["rouge_l"] == pytest.approx(np.mean([R.rouge_l(h, r) for h, r in zip(toks_h, toks_r, strict=True)]))
    assert out["per_example"]["cider"] == pytest.approx(R.cider_d(toks_h, [[r] for r in toks_r]), abs=1e-9)
    assert sc.bleu(refs, hyps) == pytest.approx(ref_bleu, abs=1e-6)
    # without any matching 4-gram the toolkit's smoothing constants (1e-15 / 1e-9) leave a
    # small positive BLEU-4 where the definition gives 0
    assert R.corpus_bleu([HYP], [REF])[3] == 0.0 and 0.0 < sc.bleu([" ".join(REF)], [" ".join(HYP)])[3] < 1e-3
    # rouge-score's ROUGE-L F1 is beta = 1 on its own tokens (the same words here)
    rs = M.rouge_score_l(hyps, refs)
    assert rs["per_example"] == pytest.approx([R.rouge_l(h, r, beta=1.0) for h, r in zip(toks_h, toks_r, strict=True)])


def test_sacrebleu_by_hand():
    pytest.importorskip("sacrebleu")
    out = M.sacrebleu_bleu([" ".join(HYP)], [" ".join(REF)])
    assert out["precisions"][:3] == pytest.approx([5 / 6, 3 / 5, 1 / 4])
    assert out["bp"] == 1.0 and "tok:13a" in out["signature"]


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's tokenizer and METEOR need Java")
def test_coco_metrics_with_ptb_tokenizer_and_meteor():
    hyps = {"a": "The heart is enlarged. No pleural effusion.", "b": "Lungs are clear."}
    refs = {"a": ["Heart is enlarged, no effusion."], "b": ["The lungs are clear."]}
    out = M.coco_metrics(hyps, refs)
    # the PTB tokenizer lower-cases and drops punctuation
    assert out["tokenized"]["hyps"]["a"] == "the heart is enlarged no pleural effusion"
    assert out["tokenized"]["refs"]["b"] == ["the lungs are clear"]
    th = [out["tokenized"]["hyps"][i].split() for i in ("a", "b")]
    tr = [out["tokenized"]["refs"][i][0].split() for i in ("a", "b")]
    assert out["bleu_1"] == pytest.approx(R.corpus_bleu(th, tr)[0], abs=1e-6)
    assert out["cider"] == pytest.approx(np.mean(R.cider_d(th, [[r] for r in tr])), abs=1e-9)
    assert 0.0 < out["meteor"] < 1.0
    same = M.coco_metrics({"a": "heart is enlarged"}, {"a": ["heart is enlarged"]})
    assert same["bleu_1"] == pytest.approx(1.0) and same["meteor"] > 0.9


# -- resampling -------------------------------------------------------------------------------


def test_paired_permutation_exact_by_hand():
    # differences 1, -0.5, 2, 3 (sum 5.5): of the 16 sign flips only +-5.5 and +-6.5 reach |5.5|
    a, b = [1.0, 2.0, 3.0, 4.0], [0.0, 2.5, 1.0, 1.0]
    assert R.paired_permutation_p(a, b) == pytest.approx(4 / 16)
    both = np.array(a + b)
    r = M.paired_test(lambda ia, ib: float(both[ia].mean() - both[ib].mean()), 4, n_resamples=1000, seed=0)
    assert r["p_value"] == pytest.approx(0.25) and r["difference"] == pytest.approx(1.375)
    assert "exact" in r["test"]


def test_paired_test_with_a_non_decomposable_metric():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 7)
    y[:2] = [0, 1]
    sa, sb = rng.random(7), rng.random(7)
    scores = np.concatenate([sa, sb])
    yy = np.concatenate([y, y])

    def stat(ia, ib):
        return M.auc_fast(yy[ia], scores[ia]) - M.auc_fast(yy[ib], scores[ib])

    ref = R.paired_permutation_p(list(sa), list(sb), stat=lambda x, z: R.auc(list(y), x) - R.auc(list(y), z))
    assert M.paired_test(stat, 7, n_resamples=1000)["p_value"] == pytest.approx(ref)


def test_bootstrap_ci_against_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(4)
    x = rng.normal(1.0, 2.0, 200)
    ours = M.bootstrap_ci(lambda idx: float(x[idx].mean()), len(x), n_boot=2000, seed=1)
    sp = bootstrap((x,), np.mean, n_resamples=2000, method="percentile", random_state=1).confidence_interval
    assert ours["low"] == pytest.approx(sp.low, abs=0.08) and ours["high"] == pytest.approx(sp.high, abs=0.08)
    assert ours["low"] < x.mean() < ours["high"]
    const = M.bootstrap_ci(lambda idx: 0.5, 10, n_boot=50)
    assert (const["low"], const["high"]) == (0.5, 0.5)
    # undefined resamples are dropped and counted
    half = M.bootstrap_ci(lambda idx: None if idx[0] % 2 else 1.0, 10, n_boot=200, seed=0)
    assert 0 < half["n_valid"] < 200
    assert R.percentile([1, 2, 3, 4], 50) == pytest.approx(np.percentile([1, 2, 3, 4], 50))
