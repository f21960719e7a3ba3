"""The path reference (explanations) and the cycle check, against values computed by hand."""

import pytest

from kgrag.causal import inference, scoring
from kgrag.causal.network import CausalGraph

EDGES = [
    {"src": "a", "dst": "b", "p": 0.5, "status": "accepted"},
    {"src": "b", "dst": "c", "p": 0.4, "status": "accepted"},
    {"src": "a", "dst": "c", "p": 0.2, "status": "accepted"},
    {"src": "c", "dst": "e", "p": 0.5, "status": "accepted"},
    {"src": "a", "dst": "x", "p": 0.9, "status": "rejected"},
]


def test_path_strengths_by_hand():
    ps = scoring.paths(EDGES, {"a": 1.0}, ["e", "x"])
    # a->b->c->e: 0.5 * 0.4 * 0.5 = 0.1; a->c->e: 0.2 * 0.5 = 0.1; the rejected edge forms no path
    assert sorted(p.nodes for p in ps["e"]) == [["a", "b", "c", "e"], ["a", "c", "e"]]
    assert all(p.strength == pytest.approx(0.1, abs=1e-12) for p in ps["e"])
    assert ps["x"] == []
    # soft q scales the strength; max_len drops the long path; q = 0 starts no path
    ps = scoring.paths(EDGES, {"a": 0.5, "b": 0.0}, ["e"], max_len=2)
    assert [(p.nodes, round(p.strength, 12)) for p in ps["e"]] == [(["a", "c", "e"], 0.05)]


def test_path_strengths_are_not_probabilities():
    # noisy-OR over the two paths to e would give 1 - 0.99 * 0.9 * 0.9 = 0.1981; they share a -> ... -> c -> e.
    # Exact: P(c | a=1) = 0.505 * 0.5248 + 0.495 * 0.208 = 0.367984; P(e) = 0.367984 * 0.505 + 0.632016 * 0.01
    g = CausalGraph.from_edges(EDGES, {}, default_leak=0.01)
    p = inference.posteriors(g, {"a": 1.0}, ["e"])["e"]
    assert p == pytest.approx(0.367984 * 0.505 + 0.632016 * 0.01, abs=1e-12)
    assert abs(p - 0.1981) > 0.005


def test_find_cycles():
    assert scoring.find_cycles(EDGES) == []
    cyc = scoring.find_cycles(EDGES + [{"src": "e", "dst": "a", "p": 0.1, "status": "accepted"}])
    assert cyc and set(cyc[0]) <= {"a", "b", "c", "e"}
    # proposed edges do not count as cycles unless asked
    assert scoring.find_cycles(EDGES + [{"src": "e", "dst": "a", "p": 0.1, "status": "proposed"}]) == []
