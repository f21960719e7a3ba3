"""The pure-Python reference against values computed by hand."""

import math

import pytest

from kgrag.causal import scoring
from kgrag.types import ReportCandidate

EDGES = [
    {"src": "a", "dst": "b", "p": 0.5, "status": "accepted"},
    {"src": "b", "dst": "c", "p": 0.4, "status": "accepted"},
    {"src": "a", "dst": "c", "p": 0.2, "status": "accepted"},
    {"src": "c", "dst": "e", "p": 0.5, "status": "accepted"},
    {"src": "a", "dst": "x", "p": 0.9, "status": "rejected"},
]


def test_probabilities_by_hand():
    p = scoring.concept_probabilities(EDGES, {"a": 1.0}, ["b", "c", "e", "x"], default_leak=0.01)
    assert p["b"] == pytest.approx(1 - 0.99 * 0.5, abs=1e-12)              # 0.505
    assert p["c"] == pytest.approx(1 - 0.99 * 0.8 * 0.8, abs=1e-12)        # 0.3664
    # e: paths a->b->c->e (0.1), a->c->e (0.1); length 3 and 2
    assert p["e"] == pytest.approx(1 - 0.99 * 0.9 * 0.9, abs=1e-12)        # 0.1981
    assert p["x"] == pytest.approx(0.01, abs=1e-12)                          # rejected edge unused


def test_max_len_and_leaks():
    p = scoring.concept_probabilities(EDGES, {"a": 1.0}, ["e"], max_len=2, leaks={"e": 0.1})
    # only a->c->e (0.1) has <= 2 edges: 1 - 0.9 * 0.9 = 0.19
    assert p["e"] == pytest.approx(0.19, abs=1e-12)


def test_observed_target_and_soft_evidence():
    p = scoring.concept_probabilities(EDGES, {"a": 0.5, "b": 0.2}, ["b"], default_leak=0.0)
    # b observed q=0.2 and path a->b strength 0.5*0.5=0.25: 1 - 0.8 * 0.75 = 0.4
    assert p["b"] == pytest.approx(0.4, abs=1e-12)


def test_candidate_scores_by_hand():
    got = scoring.candidate_scores(EDGES, [ReportCandidate("r", ["b"], ["c"]), ReportCandidate("z")], {"a": 1.0})
    expected = (math.log(0.505) + math.log(1 - 0.3664)) / 2
    assert got[0].loglik == pytest.approx(expected, abs=1e-12) and got[0].n == 2
    assert got[1].loglik is None


def test_log_is_clipped():
    got = scoring.candidate_scores(EDGES, [ReportCandidate("r", [], ["a"])], {"a": 1.0})
    assert got[0].loglik == pytest.approx(math.log(1e-6))


def test_paths_and_counterfactuals():
    ps = scoring.paths(EDGES, {"a": 1.0}, ["e"])
    assert sorted(p.nodes for p in ps["e"]) == [["a", "b", "c", "e"], ["a", "c", "e"]]
    assert all(p.strength == pytest.approx(0.1) for p in ps["e"])
    cf = scoring.counterfactuals(EDGES, {"a": 1.0, "b": 1.0}, ["c"])
    # remove a: only b->c (0.4): 1 - 0.99*0.6 = 0.406 ; remove b: a->c, a->b->c: 0.3664
    assert cf["c"][0] == {"remove": "a", "probability": pytest.approx(0.406)}
    assert cf["c"][1] == {"remove": "b", "probability": pytest.approx(0.3664)}


def test_find_cycles():
    assert scoring.find_cycles(EDGES) == []
    cyc = scoring.find_cycles(EDGES + [{"src": "e", "dst": "a", "p": 0.1, "status": "accepted"}])
    assert cyc and set(cyc[0]) <= {"a", "b", "c", "e"}
    # proposed edges do not count as cycles unless asked
    assert scoring.find_cycles(EDGES + [{"src": "e", "dst": "a", "p": 0.1, "status": "proposed"}]) == []
