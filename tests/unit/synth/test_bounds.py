"""The Bayes-optimal bounds of kgrag.synth.bounds: hand-computed models, a brute-force
reference, and the shipped model against its own sampler."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kgrag.synth import bounds as b


def test_one_finding_by_hand():
    # d ~ 0.2; f = noisy-OR(d: 0.5, leak 0.1): P(f | d) = 0.55, P(f | ¬d) = 0.1
    nodes = [b.root("d", 0.2), b.noisy_or("f", [("d", 0.5)], 0.1)]
    pats, p_pat, joint = b.observed_distribution(nodes, ["f"], ["d"])
    assert pats.tolist() == [[0], [1]]
    assert p_pat == pytest.approx([0.81, 0.19], abs=1e-12)
    assert joint["d"] == pytest.approx([0.09, 0.11], abs=1e-12)
    # positives: 0.55 at the high posterior, 0.45 low; negatives: 0.1 high, 0.9 low
    # AUC = 0.55·0.9 + ½(0.55·0.1 + 0.45·0.9) = 0.725
    assert b.auc_bound(nodes, ["f"], ["d"])["d"] == pytest.approx(0.725, abs=1e-12)
    # P(d | f) = 0.11/0.19 > ½ fires, P(d | ¬f) = 0.09/0.81 does not: BA = ½(0.55 + 0.9)
    assert b.vote_bound(nodes, nodes, ["f"], ["d"])["d"] == pytest.approx(0.725, abs=1e-12)


def test_hidden_mediator_is_summed_out():
    # d ~ ½ → m (strength 1, no leak: m = d) → f (0.8, no leak); m hidden
    nodes = [b.root("d", 0.5), b.noisy_or("m", [("d", 1.0)], 0.0), b.noisy_or("f", [("m", 0.8)], 0.0)]
    _, p_pat, joint = b.observed_distribution(nodes, ["f"], ["d"])
    assert p_pat == pytest.approx([0.6, 0.4], abs=1e-12)
    assert joint["d"] == pytest.approx([0.1, 0.4], abs=1e-12)
    # positives: 0.8 at P = 1, 0.2 at P = 1/6; negatives all at 1/6: AUC = 0.8 + ½·0.2 = 0.9
    assert b.auc_bound(nodes, ["f"], ["d"])["d"] == pytest.approx(0.9, abs=1e-12)


def _brute(nodes, observed, target):
    names = [n.name for n in nodes]
    p_pat, joint = {}, {}
    for full in itertools.product([0, 1], repeat=len(names)):
        st = dict(zip(names, full, strict=True))
        p = 1.0
        for n in nodes:
            q = float(n.p1(np.array([[st[u] for u in n.parents]], dtype=np.int8).reshape(1, -1))[0])
            p *= q if st[n.name] else 1.0 - q
        key = tuple(st[o] for o in observed)
        p_pat[key] = p_pat.get(key, 0.0) + p
        joint[key] = joint.get(key, 0.0) + p * st[target]
    return p_pat, joint


def test_every_kind_of_scope_matches_brute_force():
    # observed parent of a hidden node (mixed scope), an observed child of an observed
    # node, an image finding with two hidden parents, a table node
    nodes = [
        b.root("d", 0.3), b.root("e", 0.6),
        b.noisy_or("h", [("d", 0.7), ("e", 0.2)], 0.05),
        b.table("s", ["d"], {(0,): 0.2, (1,): 0.9}),
        b.noisy_or("i", [("h", 0.6), ("e", 0.4)], 0.1),
        b.table("x", ["s"], {(0,): 0.1, (1,): 0.4}),
        b.table("k", ["s", "e"], {(0, 0): 0.1, (0, 1): 0.3, (1, 0): 0.5, (1, 1): 0.95}),
    ]
    observed = ["s", "i", "x"]
    pats, p_pat, joint = b.observed_distribution(nodes, observed, ["d"])
    ref_p, ref_j = _brute(nodes, observed, "d")
    for row, pp, jj in zip(pats.tolist(), p_pat, joint["d"], strict=True):
        assert pp == pytest.approx(ref_p[tuple(row)], abs=1e-12)
        assert jj == pytest.approx(ref_j[tuple(row)], abs=1e-12)
    assert p_pat.sum() == pytest.approx(1.0, abs=1e-12)


def test_bad_requests_are_refused():
    nodes = [b.root("d", 0.2), b.noisy_or("f", [("d", 0.5)], 0.1)]
    with pytest.raises(ValueError, match="not in the model"):
        b.observed_distribution(nodes, ["g"], ["d"])
    with pytest.raises(ValueError, match="must be hidden"):
        b.observed_distribution(nodes, ["d"], ["d"])
    with pytest.raises(ValueError, match="no probability"):
        b.table("t", ["d"], {(0,): 0.1})
    with pytest.raises(ValueError, match="unknown regime"):
        b.synth_nodes("other")


@pytest.mark.parametrize("regime,split,shift", [("train", "train", False), ("shifted", "test", True)])
def test_the_shipped_model_is_what_the_sampler_draws(regime, split, shift):
    from kgrag.synth import model

    nodes = b.synth_nodes(regime)
    observed = b.image_nodes()
    pats, p_pat, joint = b.observed_distribution(nodes, observed, ["heart_failure"])
    rng = np.random.default_rng(5)
    n = 20_000
    draws = [model.sample_study(rng, split, shift) for _ in range(n)]
    for j, name in enumerate(observed):
        want = float(p_pat[pats[:, j] == 1].sum())
        got = np.mean([(d.site == "B") if name == b.SITE else d.state[name] for d in draws])
        assert abs(got - want) < 4 * np.sqrt(want * (1 - want) / n) + 1e-9, name
    hf_and_site = float(joint["heart_failure"][pats[:, observed.index(b.SITE)] == 1].sum())
    got = np.mean([d.state["heart_failure"] and d.site == "B" for d in draws])
    assert abs(got - hf_and_site) < 4 * np.sqrt(hf_and_site * (1 - hf_and_site) / n)
