"""MR-RAG fusion (planted-weight recovery, renormalization by hand) and the reward model."""

import math

import numpy as np
import pytest
import torch

from kgrag.model.fusion import (
    FusionWeights,
    available,
    form_of,
    fuse,
    fused_relevance,
    fusion_loss,
    jaccard,
    jaccard_matrix,
    learn_weights,
    overlap_positives,
    recall_at_k,
    recall_at_k_reference,
    relevance_reference,
)
from kgrag.model.reward import (
    pairwise_loss,
    pairwise_loss_reference,
    score,
    train_reward,
    youden_threshold,
)


def _planted(planted, q=300, c=32, seed=0, temperature=0.05):
    """Each query's one positive is drawn with P ∝ exp(planted·sims / T): the model
    the InfoNCE objective is the likelihood of, so its optimum is the planted weighting."""
    rng = np.random.default_rng(seed)
    sims = rng.uniform(-1, 1, size=(q, c, 3))
    r = sims @ np.asarray(planted) / temperature
    p = np.exp(r - r.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    pos = np.zeros((q, c), bool)
    for i in range(q):
        pos[i, rng.choice(c, p=p[i])] = True
    return sims, pos


@pytest.mark.parametrize("planted", [(0.2, 0.1, 0.7), (0.6, 0.3, 0.1)])
def test_fusion_recovers_planted_weighting(planted):
    sims, pos = _planted(planted)
    w = learn_weights(sims, pos, steps=300, lr=0.1)
    got = np.array([w.alpha, w.beta, w.gamma])
    assert got.sum() == pytest.approx(1.0) and (got >= 0).all()
    assert np.abs(got - np.array(planted)).max() < 0.05, got


def test_fusion_recovers_a_thresholded_planting_in_order():
    # positives = top 4 by the planted relevance (the concept-overlap style of labels)
    rng = np.random.default_rng(1)
    sims = rng.uniform(-1, 1, size=(200, 40, 3))
    planted = np.array([0.1, 0.25, 0.65])
    rel = sims @ planted
    pos = rel >= np.sort(rel, axis=1)[:, -4][:, None]
    got = np.array(list(learn_weights(sims, pos, steps=400, lr=0.1).to_dict().values()))
    assert np.argsort(got).tolist() == np.argsort(planted).tolist()
    assert np.abs(got - planted).max() < 0.1, got


def test_fusion_loss_gradient_matches_finite_differences():
    sims, pos = _planted((0.3, 0.3, 0.4), q=20, c=8, seed=3)
    w = np.array([0.2, -0.1, 0.4])
    _, g = fusion_loss(w, sims, pos)
    eps = 1e-6
    for k in range(3):
        d = np.zeros(3)
        d[k] = eps
        num = (fusion_loss(w + d, sims, pos)[0] - fusion_loss(w - d, sims, pos)[0]) / (2 * eps)
        assert g[k] == pytest.approx(num, abs=1e-6)


def test_fusion_loss_gradient_with_missing_terms_matches_finite_differences():
    sims, pos = _planted((0.3, 0.3, 0.4), q=30, c=8, seed=4)
    avail = np.tile([[True, True, False], [True, True, True], [False, False, True]], (10, 1))
    w = np.array([0.5, -0.3, 0.1])
    _, g = fusion_loss(w, sims, pos, avail=avail)
    eps = 1e-6
    for k in range(3):
        d = np.zeros(3)
        d[k] = eps
        num = (fusion_loss(w + d, sims, pos, avail=avail)[0] - fusion_loss(w - d, sims, pos, avail=avail)[0]) / (2 * eps)
        assert g[k] == pytest.approx(num, abs=1e-6)


def test_temperature_gradient_matches_finite_differences():
    sims, pos = _planted((0.3, 0.3, 0.4), q=20, c=8, seed=6)
    w, tau = np.array([0.1, 0.2, -0.3]), np.log(1 / 0.2)
    _, _, g_tau = fusion_loss(w, sims, pos, float(np.exp(-tau)), grad_temperature=True)
    eps = 1e-6
    num = (fusion_loss(w, sims, pos, float(np.exp(-(tau + eps))))[0]
           - fusion_loss(w, sims, pos, float(np.exp(-(tau - eps))))[0]) / (2 * eps)
    assert g_tau == pytest.approx(num, abs=1e-6)


def test_learned_temperature_recovers_the_planted_one():
    # positives drawn with T = 0.2 (not the 0.05 a fixed fit would assume)
    sims, pos = _planted((0.5, 0.2, 0.3), q=600, c=32, seed=7, temperature=0.2)
    fit = {}
    w = learn_weights(sims, pos, steps=600, lr=0.05, temperature=None, fit=fit)
    assert fit["temperature"] == pytest.approx(0.2, rel=0.2)
    assert np.abs(np.array([w.alpha, w.beta, w.gamma]) - [0.5, 0.2, 0.3]).max() < 0.08


def test_image_only_rows_fit_the_image_ratio_and_ignore_the_text_term():
    # positives planted with α:β = 0.8:0.2 on image-only queries; their text column is
    # a decoy that would win if the fit did not drop it
    sims, pos = _planted((0.8, 0.2, 0.0), q=400, c=32, seed=5)
    sims[:, :, 2] = np.where(pos, 1.0, -1.0)
    w = learn_weights(sims, pos, steps=400, lr=0.1, avail=np.tile(available("image"), (400, 1)))
    a, b, _ = w.effective(True, False)
    assert a == pytest.approx(0.8, abs=0.06) and b == pytest.approx(0.2, abs=0.06)


def test_query_forms_and_per_form_weights():
    assert form_of(True, False, False) == "image" and form_of(True, True, False) == "image+question"
    assert form_of(True, True, True) == "image+findings" and form_of(False, True, True) == "findings+question"
    assert form_of(False, False, True) == "findings" and form_of(False, True, False) == "question"
    assert available("image").tolist() == [True, True, False] and available("question").tolist() == [False, False, True]
    w = FusionWeights(0.4, 0.4, 0.2, {"image+question": (0.6, 0.3, 0.1)})
    assert w.for_form("image+question").to_dict() == {"alpha": 0.6, "beta": 0.3, "gamma": 0.1}
    assert w.for_form("image+findings").to_dict() == {"alpha": 0.4, "beta": 0.4, "gamma": 0.2}  # joint fit
    assert FusionWeights.from_dict(w.to_dict()) == w
    sims = np.array([[[0.5, 0.2, 1.0]]])
    # image form: α, β renormalized → (0.5·0.4 + 0.2·0.4) / 0.8 = 0.35; text-only: the γ term alone
    assert fused_relevance(w, sims, "image")[0, 0] == pytest.approx(0.35)
    assert fused_relevance(w, sims, "findings")[0, 0] == pytest.approx(1.0)
    assert fused_relevance(w, sims, "image+findings")[0, 0] == pytest.approx(
        relevance_reference(w, 0.5, 0.2, 1.0))


def test_recall_at_k_by_hand_and_reference():
    rel = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    pos = np.array([[True, False, True, True], [True, False, False, False], [False, False, False, False]])
    # k = 2: query 0 top {0, 1} holds 1 of min(2, 3) → 0.5; query 1 top {3, 2} holds 0 of 1 → 0;
    # query 2 has no positive and is left out
    assert recall_at_k(rel, pos, 2) == pytest.approx(0.25)
    assert recall_at_k_reference(rel.tolist(), pos.tolist(), 2) == pytest.approx(0.25)
    rng = np.random.default_rng(0)
    rel, pos = rng.random((20, 30)), rng.random((20, 30)) < 0.2
    assert recall_at_k(rel, pos, 10) == pytest.approx(recall_at_k_reference(rel.tolist(), pos.tolist(), 10))


def test_jaccard_matrix_matches_jaccard():
    a = [{"x"}, set(), {"x", "y"}]
    b = [{"x", "y"}, set(), {"z"}]
    m = jaccard_matrix(a, b)
    assert m.tolist() == [[jaccard(x, y) for y in b] for x in a]
    assert m[1, 1] == 1.0 and m[0, 0] == 0.5


def _form_corpus(n=300, seed=0):
    """Concept sets over 6 concepts; every vector is its study's concept code plus noise: the
    images are noisy, findings texts nearly exact, questions pure noise (uninformative)."""
    rng = np.random.default_rng(seed)
    dim = 32
    code = rng.standard_normal((6, dim))
    sets = [{f"c{j}" for j in range(6) if rng.random() < 0.3} for _ in range(n)]
    base = np.stack([sum((code[int(c[1:])] for c in s), np.zeros(dim)) for s in sets])

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    T = unit(base + 0.3 * rng.standard_normal((n, dim)) + 1e-3)
    img = unit(base + 3.0 * rng.standard_normal((n, dim)) + 1e-3)
    findings = unit(base + 0.2 * rng.standard_normal((n, dim)) + 1e-3)
    question = unit(rng.standard_normal((n, dim)))
    return sets, T, img, findings, question


def test_fusion_is_fitted_per_query_form():
    from kgrag.model.train import fit_fusion

    sets, T, img, findings, question = _form_corpus()
    q = np.arange(200, 300)  # the last 100 studies are the queries, each excluded from its own candidates
    forms = {"image": (img[q], None), "image+question": (img[q], question[q]), "image+findings": (img[q], findings[q]),
             "findings": (None, findings[q])}
    w, rep = fit_fusion(forms, [sets[i] for i in q], img, T, sets, q, np.random.default_rng(0), seed=0,
                        baseline_text=T[q])
    g_question, g_findings = w.forms["image+question"][2], w.forms["image+findings"][2]
    assert g_question < 0.15 < 0.5 < g_findings  # a noise question gets little weight, findings text a lot
    for f in ("image+question", "image+findings"):  # γ kept at the share val recall prefers
        fit = rep[f]["fit"]
        by_share = fit["recall@10_by_gamma_share"]
        assert set(by_share) == {"1.0", "0.5", "0.25", "0.1", "0.0"}
        assert rep[f]["recall@10"] == pytest.approx(max(by_share.values()))
        assert w.forms[f][2] == pytest.approx(fit["gamma_fitted"] * fit["gamma_share_kept"], abs=1e-4)
    assert set(w.forms) == {"image", "image+question", "image+findings"}
    for f in forms:
        r = rep[f]
        assert 0 <= r["recall@10"] <= 1 and r["recall@10_chance"] < r["recall@10"]
    # the question, weighed as fitted, does not drag image retrieval down; findings text lifts it
    assert rep["image+question"]["recall@10"] >= rep["image"]["recall@10"] - 0.03
    assert rep["image+findings"]["recall@10"] > rep["image"]["recall@10"] + 0.1
    assert rep["image+question"]["recall@10_text_text_only"] < rep["image+question"]["recall@10"]
    # weights fitted with the study's own report as the text side trust wording far more
    assert rep["own_report_fit"]["weights"][2] > g_question + 0.3
    assert rep["image+question"]["recall@10_own_report_fit"] < rep["image+question"]["recall@10"]


def test_fusion_loss_by_hand():
    # one query, two candidates, weights equal (logits 0): r = mean(sims) / T
    sims = np.array([[[0.3, 0.3, 0.3], [0.0, 0.0, 0.0]]])
    pos = np.array([[True, False]])
    loss, _ = fusion_loss(np.zeros(3), sims, pos, temperature=0.1)
    # r = [3, 0]; loss = log(e^3 + e^0) - 3 = log(1 + e^-3)
    assert loss == pytest.approx(math.log(1 + math.exp(-3)))


def test_learn_weights_without_usable_queries_keeps_equal_weights(caplog):
    sims = np.zeros((2, 3, 3))
    w = learn_weights(sims, np.ones((2, 3), bool))
    assert (w.alpha, w.beta, w.gamma) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert "equal" in caplog.text


def test_fuse_renormalizes_missing_modalities_by_hand():
    w = FusionWeights(0.2, 0.3, 0.5)
    s_it, s_ii, s_tt = np.array([0.5, 1.0]), np.array([0.2, 0.0]), np.array([1.0, -1.0])
    # all three: 0.2·0.5 + 0.3·0.2 + 0.5·1.0 = 0.66; 0.2·1 + 0 + 0.5·(−1) = −0.3
    assert np.allclose(fuse(w, s_it, s_ii, s_tt), [0.66, -0.3])
    # text-only query: only the γ term, renormalized to 1
    assert np.allclose(fuse(w, None, None, s_tt), s_tt)
    # image-only query: α, β renormalized to 0.4 / 0.6 → 0.4·0.5 + 0.6·0.2 = 0.32; 0.4·1 = 0.4
    assert np.allclose(fuse(w, s_it, s_ii, None), [0.32, 0.4])
    for j in range(2):
        assert relevance_reference(w, s_it[j], s_ii[j], s_tt[j]) == pytest.approx(fuse(w, s_it, s_ii, s_tt)[j])
        assert relevance_reference(w, s_it[j], s_ii[j], None) == pytest.approx(fuse(w, s_it, s_ii, None)[j])
        assert relevance_reference(w, None, None, s_tt[j]) == pytest.approx(s_tt[j])
    assert w.effective(False, False) == (0.0, 0.0, 0.0)


def test_concept_overlap_positives():
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0  # two normal studies
    assert jaccard({"a"}, set()) == 0.0
    # Jaccard ≥ 0.5 is positive: {a} vs {a, b} = 0.5 → positive; {a} vs {b} = 0 → negative
    assert overlap_positives([{"a"}], [{"a"}, {"b"}, {"a", "b"}, {"a", "b", "c"}]).tolist() == [[True, False, True, False]]


# -- reward model ---------------------------------------------------------------------------
def test_pairwise_loss_by_hand():
    # −log σ(2 − 1) = log(1 + e^−1) = 0.31326; −log σ(0 − 1) = log(1 + e^1) = 1.31326
    hand = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert pairwise_loss_reference([2.0, 0.0], [1.0, 1.0]) == pytest.approx(hand)
    assert float(pairwise_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))) == pytest.approx(hand, rel=1e-6)


def test_youden_threshold_by_hand():
    scores = [0.9, 0.8, 0.7, 0.4, 0.3, 0.1]
    relevant = [True, True, False, True, False, False]
    # τ = 0.8: TPR 2/3, FPR 0 → J 0.667; τ = 0.4: TPR 1, FPR 1/3 → J 0.667 (tie → stricter 0.8)
    assert youden_threshold(scores, relevant) == pytest.approx((0.8, 2 / 3, 0.0))
    with pytest.raises(ValueError):
        youden_threshold([0.1, 0.2], [True, True])


def test_reward_model_learns_a_planted_preference():
    rng = np.random.default_rng(0)
    dim, n = 8, 600
    q = rng.standard_normal((n, dim)).astype(np.float32)
    noise = rng.standard_normal((n, dim)).astype(np.float32)
    d_pos = q + 0.3 * noise  # the better context is close to the query
    d_neg = rng.standard_normal((n, dim)).astype(np.float32)
    m, acc = train_reward(q, d_pos, d_neg, dim=dim, epochs=20, seed=0, lr=3e-3, batch=64)
    assert acc > 0.9
    r = score(m, q[:1], np.stack([d_pos[0], d_neg[0]]))  # one query broadcast over two contexts
    assert r.shape == (2,) and r[0] > r[1]
