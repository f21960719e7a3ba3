"""Exact inference: hand-computed values, the 2^n enumeration, and pgmpy on random DAGs."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from kgrag.causal import inference as inf
from kgrag.causal.network import CausalGraph
from kgrag.errors import CycleError, InputError


def diamond(leak_a: float = 0.3) -> CausalGraph:
    """a -> b (0.5), b -> c (1), b -> d (1), d -> c (1); zero leaks below a."""
    return CausalGraph.build({"a": leak_a, "b": 0.0, "c": 0.0, "d": 0.0},
                             [("a", "b", 0.5), ("b", "c", 1.0), ("b", "d", 1.0), ("d", "c", 1.0)])


def test_shared_edges_are_not_double_counted():
    # c happens only through b, so P(c | a = 1) = P(b | a = 1) = 0.5 (path noisy-OR says 1 - 0.5 * 0.5 = 0.75)
    p = inf.posteriors(diamond(), {"a": 1.0})
    assert p["c"] == pytest.approx(0.5, abs=1e-12)
    assert p["b"] == pytest.approx(0.5, abs=1e-12) and p["d"] == pytest.approx(0.5, abs=1e-12)
    assert p["a"] == 1.0


def test_hand_computed_chain_collider_and_soft_root():
    # a -> b (0.6), leak_b 0.1; a soft with q = 0.5: P(b) = 0.5 (1 - 0.9 * 0.4) + 0.5 * 0.1 = 0.37
    g = CausalGraph.build({"a": 0.2, "b": 0.1}, [("a", "b", 0.6)])
    assert inf.posteriors(g, {"a": 0.5})["b"] == pytest.approx(0.37, abs=1e-12)
    # no V_I: a is a root with P = leak 0.2: P(b) = 0.2 * 0.64 + 0.8 * 0.1 = 0.208
    assert inf.prior_marginals(g) == pytest.approx({"a": 0.2, "b": 0.208}, abs=1e-12)
    # collider x -> z <- y (1.0 each, leak 0): P(x | z = 1) = 0.5 / (1 - 0.5 * 0.5) = 2/3
    g = CausalGraph.build({"x": 0.5, "y": 0.5, "z": 0.0}, [("x", "z", 1.0), ("y", "z", 1.0)])
    m = inf.marginals(g, ["x", "z"], evidence={"z": 1})
    assert m["x"] == pytest.approx(2 / 3, abs=1e-12) and m["z"] == 1.0
    # explaining away: also seeing y = 1 brings x back to its prior
    assert inf.marginals(g, ["x"], evidence={"z": 1, "y": 1})["x"] == pytest.approx(0.5, abs=1e-12)


def test_a_concept_of_v_i_with_parents_becomes_a_root():
    # V_I may hold a finding: b observed q = 0.2 cuts a -> b; c follows b only
    g = CausalGraph.build({"a": 0.9, "b": 0.0, "c": 0.0}, [("a", "b", 1.0), ("b", "c", 0.5)])
    p = inf.posteriors(g, {"b": 0.2})
    assert p["b"] == pytest.approx(0.2) and p["c"] == pytest.approx(0.1, abs=1e-12)
    assert p["a"] == pytest.approx(0.9, abs=1e-12)  # nothing flows back up a cut edge


def test_mediator_do_differs_from_removing_the_evidence():
    # a -> f (0.8) -> d (0.9), a -> d (0.3); leaks: f 0.05, d 0.02.  V_I: a = 1, f = 0.9
    g = CausalGraph.build({"a": 0.1, "f": 0.05, "d": 0.02}, [("a", "f", 0.8), ("f", "d", 0.9), ("a", "d", 0.3)])
    obs = {"a": 1.0, "f": 0.9}
    full = inf.posteriors(g, obs)["d"]
    # full: 1 - 0.98 * 0.7 * (1 - 0.9 * 0.9) = 1 - 0.686 * 0.19 = 0.86966
    assert full == pytest.approx(1 - 0.98 * 0.7 * 0.19, abs=1e-12)
    do_f0 = inf.interventions(g, obs, [{"f": 0.0}], ["d"])[0]["d"]
    # do(f = 0): only a -> d and the leak remain: 1 - 0.98 * 0.7 = 0.314
    assert do_f0 == pytest.approx(1 - 0.98 * 0.7, abs=1e-12)
    # without the evidence f: f follows its CPD from a: P(f) = 1 - 0.95 * 0.2 = 0.81
    pf = 1 - 0.95 * 0.2
    without = inf.posteriors(g, {"a": 1.0})["d"]
    assert without == pytest.approx(1 - 0.98 * 0.7 * (1 - 0.9 * pf), abs=1e-12)
    assert abs(do_f0 - without) > 0.5


def test_do_differs_from_conditioning_on_a_confounded_cause():
    # u -> f (0.9), u -> d (0.8), f -> d (0.1); leaks 0.  Observing f = 0 lowers P(u); do(f = 0) does not.
    g = CausalGraph.build({"u": 0.5, "f": 0.0, "d": 0.0}, [("u", "f", 0.9), ("u", "d", 0.8), ("f", "d", 0.1)])
    seen = inf.marginals(g, ["d", "u"], evidence={"f": 0})
    done = inf.interventions(g, {}, [{"f": 0.0}], ["d", "u"])[0]
    # P(u | f = 0) = 0.5 * 0.1 / (0.5 * 0.1 + 0.5) = 1/11; P(d | f = 0) = 0.8 / 11
    assert seen["u"] == pytest.approx(1 / 11, abs=1e-12) and seen["d"] == pytest.approx(0.8 / 11, abs=1e-12)
    assert done["u"] == pytest.approx(0.5, abs=1e-12) and done["d"] == pytest.approx(0.4, abs=1e-12)


def test_batch_equals_single_calls_and_keeps_order():
    g = diamond()
    obs = {"a": 0.7}
    do = [{"b": 0.0}, {"d": 0.0}, {"d": 1.0}, {"a": 0.0}]
    got = inf.interventions(g, obs, do)
    for d, m in zip(do, got, strict=True):
        assert m == pytest.approx(inf.marginals(g, clamp={**obs, **d}), abs=1e-14)
    assert got[0]["c"] == 0.0 and got[1]["c"] == pytest.approx(0.35) and got[2]["c"] == 1.0


def test_unknown_targets_and_observed_concepts_are_roots():
    g = diamond()
    p = inf.posteriors(g, {"zz": 0.4}, ["zz", "yy", "c"])
    assert p["zz"] == pytest.approx(0.4) and p["yy"] == pytest.approx(g.default_leak)
    assert p["c"] == pytest.approx(0.15, abs=1e-12)
    assert inf.posteriors(g, {}, []) == {}


def test_cycles_and_bad_input_are_refused():
    g = CausalGraph.build({"a": 0.1, "b": 0.1}, [("a", "b", 0.5), ("b", "a", 0.5)])
    with pytest.raises(CycleError, match="cycle"):
        inf.posteriors(g, {})
    with pytest.raises(InputError):
        inf.posteriors(diamond(), {"a": 1.5})
    with pytest.raises(InputError):
        inf.marginals(diamond(), evidence={"a": 2})
    with pytest.raises(InputError, match="probability 0"):
        inf.marginals(diamond(leak_a=0.0), evidence={"c": 1})


def test_a_too_dense_graph_names_the_fix(monkeypatch):
    monkeypatch.setattr(inf, "MAX_CLIQUE_VARS", 3)
    monkeypatch.setattr(inf, "_COMPILED", {})
    nodes = [f"n{i}" for i in range(6)]
    g = CausalGraph.build(dict.fromkeys(nodes, 0.1), [(a, b, 0.5) for a, b in itertools.combinations(nodes, 2)])
    with pytest.raises(InputError, match="clique") as e:
        inf.posteriors(g, {})
    assert "reject" in e.value.fix


def random_dag(rnd: random.Random, n: int, density: float) -> CausalGraph:
    nodes = [f"n{i}" for i in range(n)]
    rnd.shuffle(nodes)
    edges = [(nodes[i], nodes[j], round(rnd.random(), 4)) for j in range(n) for i in range(j) if rnd.random() < density]
    return CausalGraph.build({v: round(rnd.random() * 0.3, 4) for v in nodes}, edges)


@pytest.mark.parametrize("seed", range(40))
def test_equals_enumeration_on_random_dags(seed):
    rnd = random.Random(seed)
    g = random_dag(rnd, rnd.randint(2, 11), rnd.choice([0.2, 0.45, 0.8]))  # 0.8: nodes of up to 10 parents (chains)
    nodes = g.nodes
    clamp = {v: rnd.random() for v in rnd.sample(nodes, rnd.randint(0, min(3, len(nodes))))}
    ev = {v: rnd.randint(0, 1) for v in rnd.sample(nodes, rnd.randint(0, 2))}
    try:
        ref = inf.brute_force_marginals(g, clamp=clamp, evidence=ev)
    except InputError:  # impossible evidence: both must say so
        with pytest.raises(InputError):
            inf.marginals(g, clamp=clamp, evidence=ev)
        return
    got = inf.marginals(g, clamp=clamp, evidence=ev)
    assert got.keys() == ref.keys()
    for v in ref:
        assert got[v] == pytest.approx(ref[v], abs=1e-12), v


def _pgmpy_model(g: CausalGraph):
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    m = DiscreteBayesianNetwork()
    m.add_nodes_from(g.nodes)
    m.add_edges_from([(u, v) for v in g.nodes for u, _ in g.parents_of(v)])
    cpds = []
    for v in g.nodes:
        pa = g.parents_of(v)
        cols = []
        for states in itertools.product((0, 1), repeat=len(pa)):  # pgmpy: first parent varies slowest
            p1 = g.cpd(v, {u: float(s) for (u, _), s in zip(pa, states, strict=True)})
            cols.append((1.0 - p1, p1))
        cpds.append(TabularCPD(v, 2, np.array(cols).T, evidence=[u for u, _ in pa] or None,
                               evidence_card=[2] * len(pa) or None))
    m.add_cpds(*cpds)
    m.check_model()
    return m


@pytest.mark.parametrize("seed", range(12))
def test_equals_pgmpy_on_random_dags(seed):
    pytest.importorskip("pgmpy")
    from pgmpy.inference import VariableElimination

    rnd = random.Random(100 + seed)
    g = random_dag(rnd, rnd.randint(8, 16), rnd.choice([0.15, 0.3, 0.5]))
    obs = {v: round(rnd.random(), 3) for v in rnd.sample(g.nodes, 3)}
    do = {rnd.choice([v for v in g.nodes if v not in obs]): 0.0}
    for clamp in (obs, {**obs, **do}):
        # pgmpy gets the surgery done explicitly: the clamped concepts lose their parents
        ve = VariableElimination(_pgmpy_model(g.surgery(clamp)))
        got = inf.marginals(g, clamp=clamp)
        for v in g.nodes:
            ref = float(ve.query([v], show_progress=False).values[1])
            assert got[v] == pytest.approx(ref, abs=1e-9), v
    ev_node = rnd.choice(g.nodes)
    ve = VariableElimination(_pgmpy_model(g.surgery(obs)))
    got = inf.marginals(g, clamp=obs, evidence={ev_node: 1})
    for v in g.nodes:
        if v != ev_node:
            ref = float(ve.query([v], evidence={ev_node: 1}, show_progress=False).values[1])
            assert got[v] == pytest.approx(ref, abs=1e-9), v


def test_prior_marginals_are_cached_by_fingerprint():
    g = diamond()
    a = inf.prior_marginals(g)
    a["c"] = 99.0  # the caller's copy
    assert inf.prior_marginals(diamond())["c"] == pytest.approx(0.15, abs=1e-12)
    assert diamond().fingerprint() == g.fingerprint() != diamond(0.4).fingerprint()
    assert diamond().structure_key() == diamond(0.4).structure_key()


@pytest.mark.parametrize("seed", range(15))
def test_split_into_ancestral_sets_equals_enumeration(seed, monkeypatch):
    monkeypatch.setattr(inf, "SINGLE_TREE_MAX_CLIQUE", 1)  # always one junction tree per ancestral set
    monkeypatch.setattr(inf, "_COMPILED", {})
    monkeypatch.setattr(inf, "_GROUPS", {})
    rnd = random.Random(500 + seed)
    g = random_dag(rnd, rnd.randint(4, 11), rnd.choice([0.3, 0.6]))
    clamp = {v: rnd.random() for v in rnd.sample(g.nodes, 2)}
    ev = {rnd.choice(g.nodes): rnd.randint(0, 1)} if seed % 2 else {}
    try:
        ref = inf.brute_force_marginals(g, clamp=clamp, evidence=ev)
    except InputError:
        return
    got = inf.marginals(g, clamp=clamp, evidence=ev)
    (groups,) = inf._GROUPS.values()
    assert sorted(t for _, members in groups for t in members) == sorted(g.nodes)  # every target answered once
    for v in ref:
        assert got[v] == pytest.approx(ref[v], abs=1e-12), v


def test_v_i_roots_split_the_graph_into_small_trees(monkeypatch):
    # two diagnoses whose parents are all in V_I: one tree would moralise {a, b, c} together;
    # with V_I as roots each diagnosis needs only its own family
    monkeypatch.setattr(inf, "SINGLE_TREE_MAX_CLIQUE", 2)
    monkeypatch.setattr(inf, "_GROUPS", {})
    g = CausalGraph.build({"a": 0.1, "b": 0.1, "c": 0.1, "x": 0.0, "y": 0.0},
                          [("a", "x", 0.5), ("b", "x", 0.5), ("b", "y", 0.4), ("c", "y", 0.4)])
    p = inf.posteriors(g, {"a": 1.0, "b": 0.5, "c": 0.0})
    (groups,) = inf._GROUPS.values()
    assert len(groups) >= 2
    assert p["x"] == pytest.approx(1 - (1 - 0.5) * (1 - 0.25), abs=1e-12)  # independent roots: expected noisy-OR
    assert p["y"] == pytest.approx(1 - (1 - 0.2), abs=1e-12)
