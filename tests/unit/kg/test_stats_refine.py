"""Causal statistics and refinement on tiny tables whose values are computed by hand."""

import math

import numpy as np
import pytest

from kgrag.kg import stats
from kgrag.kg.build import build_candidates
from kgrag.kg.refine import break_cycles, refine, retain
from kgrag.kg.stats import table_for

T = stats.Table(n11=30, n10=10, n01=20, n00=40)


def test_causal_power_and_lift_by_hand():
    # P(e|c) = 30/40 = 0.75 ; P(e|¬c) = 20/60 = 1/3 ; power = (0.75 - 1/3) / (2/3) = 0.625
    assert stats.p_e_given_c(T) == 0.75
    assert stats.p_e_given_not_c(T) == pytest.approx(1 / 3)
    assert stats.causal_power(T) == pytest.approx(0.625)
    # P(e) = 50/100 = 0.5 ; lift = 0.75 / 0.5 = 1.5
    assert stats.lift(T) == pytest.approx(1.5)
    # negative association clips to 0
    assert stats.causal_power(stats.Table(1, 9, 5, 5)) == 0.0


def test_wilson_interval_by_hand():
    # k=30, n=40, z=1.96: centre = (0.75 + 1.96²/80)/(1 + 1.96²/40) = 0.79802/1.09604 = 0.72810
    lo, hi = stats.wilson(30, 40)
    assert (lo + hi) / 2 == pytest.approx(0.72810, abs=1e-4)
    assert lo == pytest.approx(0.5980, abs=1e-3) and hi == pytest.approx(0.8582, abs=1e-3)
    plo, phi = stats.power_ci(T)
    assert plo < stats.causal_power(T) < phi


def test_g_test_by_hand_and_against_scipy():
    from scipy.stats import chi2_contingency

    # expected: row sums 40/60, col sums 50/50 -> E = 20, 20, 30, 30
    g = 2 * (30 * math.log(30 / 20) + 10 * math.log(10 / 20) + 20 * math.log(20 / 30) + 40 * math.log(40 / 30))
    got, p = stats.g_test(T)
    assert got == pytest.approx(g)
    ref = chi2_contingency([[30, 10], [20, 40]], correction=False, lambda_="log-likelihood")
    assert got == pytest.approx(ref[0]) and p == pytest.approx(ref[1])


def test_cmh_by_hand():
    # two strata; stratum 1: n11=10 r1=15 c1=12 n=30 -> E=6, V = 15*15*12*18/(900*29) = 1.86207
    # stratum 2: n11=5 r1=10 c1=8 n=20 -> E=4, V = 10*10*8*12/(400*19) = 1.26316
    s1 = stats.Table(10, 5, 2, 13)
    s2 = stats.Table(5, 5, 3, 7)
    num = (10 - 6) + (5 - 4)
    var = 15 * 15 * 12 * 18 / (900 * 29) + 10 * 10 * 8 * 12 / (400 * 19)
    stat, p = stats.cmh_test([s1, s2])
    assert stat == pytest.approx(num * num / var)
    from scipy.stats import chi2

    assert p == pytest.approx(chi2.sf(num * num / var, 1))


def test_holm_and_bh_by_hand():
    ps = [0.01, 0.04, 0.03, 0.5]
    # Holm: sorted 0.01,0.03,0.04,0.5 * 4,3,2,1 -> 0.04,0.09,0.08->0.09 (monotone),0.5
    assert stats.holm(ps) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    # BH: p*m/rank: 0.01*4/1=0.04, 0.03*4/2=0.06, 0.04*4/3=0.0533, 0.5 ; monotone from the top
    assert stats.benjamini_hochberg(ps) == pytest.approx([0.04, 0.05333333, 0.05333333, 0.5])


def _studies_chain(n=4000, seed=0):
    """c -> m -> e with no direct c -> e: c ⟂ e | m."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        c = rng.random() < 0.3
        m = rng.random() < (0.8 if c else 0.05)
        e = rng.random() < (0.7 if m else 0.05)
        d = rng.random() < (0.6 if c else 0.05)  # a direct effect c -> d
        a = {}
        for name, v in (("lung_opacity", c), ("consolidation", m), ("pneumonia", e), ("atelectasis", d)):
            a[name] = "present" if v else "absent"
        out[f"s{i}"] = a
    return out


def test_planted_mediator_pruned_direct_effect_survives():
    sc = _studies_chain()
    cands = build_candidates(sc, min_support=5)
    keys = {(c.src, c.dst) for c in cands}
    assert ("lung_opacity", "consolidation") in keys and ("consolidation", "pneumonia") in keys
    res = refine(cands, sc, alpha=0.05, correction="holm", tau=1.0)
    status = {(c.src, c.dst): s for c, s in res.statuses}
    assert status[("lung_opacity", "consolidation")] == "accepted"
    assert status[("consolidation", "pneumonia")] == "accepted"
    assert status[("lung_opacity", "atelectasis")] == "accepted"  # direct effect
    # no image-finding -> diagnosis edges exist at all (role order); the chain's mediator
    # pruning shows on finding -> finding: atelectasis (a sibling) ⟂ consolidation | lung_opacity
    pruned = [c for c, s in res.statuses if c.pruned_by]
    assert all(s == "rejected" for c, s in res.statuses if c.pruned_by)
    assert res.n_pruned_ci == len(pruned)


def test_mediator_pruning_on_findings():
    rng = np.random.default_rng(1)
    sc = {}
    for i in range(5000):
        x = rng.random() < 0.3  # consolidation
        m = rng.random() < (0.8 if x else 0.05)  # airspace_disease
        y = rng.random() < (0.7 if m else 0.05)  # pneumonia, only through m
        sc[f"s{i}"] = {"consolidation": "present" if x else "absent", "airspace_disease": "present" if m else "absent",
                       "pneumonia": "present" if y else "absent"}
    cands = build_candidates(sc, min_support=5)
    res = refine(cands, sc, alpha=0.05, correction="holm", tau=1.0)
    st = {(c.src, c.dst): (s, c.pruned_by) for c, s in res.statuses}
    assert st[("consolidation", "pneumonia")] == ("rejected", "airspace_disease")
    assert st[("airspace_disease", "pneumonia")][0] == "accepted"


def test_tau_keeps_ceil():
    for n in range(0, 30):
        for tau in (0.1, 0.33, 0.5, 0.7, 1.0):
            assert retain(n, tau) == min(n, math.ceil(tau * n - 1e-12))
    assert retain(10, 0.7) == 7 and retain(3, 0.7) == 3 and retain(7, 0.7) == 5


def test_tau_in_refine():
    sc = _studies_chain()
    cands = build_candidates(sc, min_support=5)
    res = refine(cands, sc, alpha=0.05, correction="holm", tau=0.5)
    acc = sum(s == "accepted" for _, s in res.statuses)
    survivors = acc + sum(s == "proposed" and c.source == "statistics" for c, s in res.statuses)
    assert acc == math.ceil(0.5 * survivors)


class _E:
    def __init__(self, s, d, power, n11=10):
        self.src, self.dst, self.power = s, d, power
        self.table = stats.Table(n11, 1, 1, 1)


def test_cycles_broken_at_weakest_edge():
    edges = [_E("a", "b", 0.9), _E("b", "c", 0.2), _E("c", "a", 0.5), _E("c", "d", 0.1)]
    removed = break_cycles(edges)
    assert [(e.src, e.dst) for e in removed] == [("b", "c")]
    assert {(e.src, e.dst) for e in edges} == {("a", "b"), ("c", "a"), ("c", "d")}


def test_uncertain_handling_in_tables():
    sc = {"a": {"x": "uncertain", "y": "present"}, "b": {"x": "present", "y": "present"}, "c": {}}
    assert table_for(sc, "x", "y", "ignore") == stats.Table(1, 0, 0, 1)
    assert table_for(sc, "x", "y", "present") == stats.Table(2, 0, 0, 1)
    assert table_for(sc, "x", "y", "absent") == stats.Table(1, 0, 1, 1)
