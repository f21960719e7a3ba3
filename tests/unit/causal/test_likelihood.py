"""MCRAG's factorized likelihood log pG, hand-computed."""

from __future__ import annotations

import math

import pytest

from kgrag.causal import inference, likelihood
from kgrag.causal.network import CausalGraph
from kgrag.errors import InputError
from kgrag.types import ReportCandidate

# a -> b (0.5), b -> c (0.8), e -> c (0.4); leaks a 0.2, b 0.1, c 0.05, e 0.3
G = CausalGraph.build({"a": 0.2, "b": 0.1, "c": 0.05, "e": 0.3}, [("a", "b", 0.5), ("b", "c", 0.8), ("e", "c", 0.4)])
# priors: P(a) = 0.2, P(e) = 0.3, P(b) = 1 - 0.9 * (1 - 0.5 * 0.2) = 0.19
PRIOR_B = 0.19


def score(cands, observed, normalize="sum"):
    return likelihood.score_reports(G, cands, observed, normalize=normalize)


def test_prior_marginals_used_for_unstated_parents():
    assert inference.prior_marginals(G)["b"] == pytest.approx(PRIOR_B, abs=1e-12)


def test_hand_computed_terms():
    obs = {"a": 0.9}
    r1, r2, r3 = score([ReportCandidate("r1", ["c"], ["b"]), ReportCandidate("r2", ["a", "c"]),
                        ReportCandidate("r3", ["zz"], ["a"])], obs)
    # r1: c with b stated absent (s = 0) and e unstated, not in V_I (prior 0.3):
    #     P(c) = 1 - 0.95 * 1 * (1 - 0.4 * 0.3) = 0.164
    #     b absent, parent a in V_I (q 0.9): P(b) = 1 - 0.9 * (1 - 0.45) = 0.505, term log(0.495)
    assert r1.loglik == pytest.approx(math.log(0.164) + math.log(0.495), abs=1e-12) and r1.n == 2
    assert [(x["concept"], x["term"]) for x in r1.per_concept] == [("c", "cpd"), ("b", "cpd")]
    assert r1.per_concept[0]["probability"] == pytest.approx(0.164, abs=1e-12)
    # r2: a is in V_I: log 0.9; c: b unstated and not in V_I -> its prior 0.19 (not P(b | V_I)), e prior 0.3:
    #     P(c) = 1 - 0.95 * (1 - 0.8 * 0.19) * (1 - 0.4 * 0.3)
    pc = 1 - 0.95 * (1 - 0.8 * PRIOR_B) * 0.88
    assert r2.loglik == pytest.approx(math.log(0.9) + math.log(pc), abs=1e-12)
    assert r2.per_concept[0] == {"concept": "a", "assertion": "present", "probability": 0.9, "term": "image"}
    # r3: an unknown concept is a root with the default leak 0.01; a denied against q = 0.9
    assert r3.loglik == pytest.approx(math.log(0.01) + math.log(0.1), abs=1e-12)


def test_a_finding_in_v_i_scores_against_the_image_and_states_its_children():
    # V_I may hold a Finding: b in V_I is scored by q, not by its CPD; as c's parent the
    # report's own assertion (present, s = 1) wins over q
    (r,) = score([ReportCandidate("r", ["b", "c"])], {"a": 0.9, "b": 0.3})
    assert r.per_concept[0]["term"] == "image"
    assert r.loglik == pytest.approx(math.log(0.3) + math.log(1 - 0.95 * 0.2 * 0.88), abs=1e-12)
    # unstated b in V_I: the expected noisy-OR with q_b = 0.3
    (r,) = score([ReportCandidate("r", ["c"])], {"b": 0.3})
    assert r.loglik == pytest.approx(math.log(1 - 0.95 * (1 - 0.8 * 0.3) * 0.88), abs=1e-12)


def test_clipping_mean_and_empty_reports():
    (r,) = score([ReportCandidate("r", ["a"])], {"a": 0.0})  # a text query said "no a"
    assert r.loglik == pytest.approx(math.log(likelihood.LOG_EPS), abs=1e-12)
    (r,) = score([ReportCandidate("r", [], ["a"])], {"a": 0.0})
    assert r.loglik == 0.0
    s, m = (score([ReportCandidate("r1", ["c", "c"], ["b"])], {"a": 0.9}, normalize=n)[0] for n in ("sum", "mean"))
    assert s.n == m.n == 2  # a concept listed twice counts once
    assert m.loglik == pytest.approx(s.loglik / 2, abs=1e-12)
    (e,) = score([ReportCandidate("e")], {"a": 0.9})
    assert e.loglik is None and e.n == 0 and e.per_concept == []


def test_lift_is_the_log_bayes_factor_of_the_image_by_hand():
    obs = {"a": 0.9}
    r1, r2, e = score([ReportCandidate("r1", ["c"], ["b"]), ReportCandidate("r2", ["a", "c"]), ReportCandidate("e")],
                      obs, normalize="lift")
    # r2: with V_I, a scores log 0.9; without it a is a root: its leak 0.2.  c's CPD has b and e
    #     unstated and outside V_I either way: the same term cancels.  lift = log(0.9 / 0.2)
    assert r2.loglik == pytest.approx(math.log(4.5), abs=1e-12) and r2.n == 2
    # r1: c given b stated absent: 0.164 either way.  b absent: with V_I P(b) = 0.505 (log 0.495);
    #     without it a is its prior 0.2: P(b) = 1 - 0.9 * (1 - 0.5 * 0.2) = 0.19 (log 0.81)
    assert r1.loglik == pytest.approx(math.log(0.495) - math.log(0.81), abs=1e-12)
    assert e.loglik is None
    # the terms themselves are those of the V_I score; the baseline is the ∅ sum
    s1 = score([ReportCandidate("r1", ["c"], ["b"])], obs)[0]
    assert r1.per_concept == s1.per_concept
    assert likelihood.prior_logliks(G, [ReportCandidate("r1", ["c"], ["b"])]) == pytest.approx(
        [math.log(0.164) + math.log(0.81)], abs=1e-12)
    # a claim the image says nothing about beyond the prior adds nothing
    (r,) = score([ReportCandidate("r", ["a"])], {"a": 0.2}, normalize="lift")
    assert r.loglik == pytest.approx(0.0, abs=1e-12)


def test_bad_input():
    with pytest.raises(InputError, match="asserts and denies"):
        score([ReportCandidate("r", ["a"], ["a"])], {})
    with pytest.raises(InputError):
        score([ReportCandidate("r", ["a"])], {"a": 1.2})
    with pytest.raises(InputError, match="normalisation"):
        score([ReportCandidate("r", ["a"])], {}, normalize="max")
