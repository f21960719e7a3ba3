import networkx as nx
import numpy as np
import pytest

from kgrag.query import rerank
from kgrag.query.pagerank import personalized_pagerank, similarity_graph
from kgrag.query.router import PrototypeRouter


def test_rerank_arithmetic_by_hand():
    loglik = [-1.0, -3.0, None, -2.0]
    sim = [0.2, 0.8, 0.5, 0.6]
    # norm(loglik) over [-1,-3,-2]: [1, 0, (None)->0, 0.5]; norm(sim) = [0, 1, 0.5, 0.6667]
    got = rerank.causal_scores(loglik, sim, alpha=0.25)
    expected = [0.75 * 1 + 0.25 * 0, 0.75 * 0 + 0.25 * 1, 0.75 * 0 + 0.25 * 0.5, 0.75 * 0.5 + 0.25 * (0.4 / 0.6)]
    assert got.tolist() == pytest.approx(expected)
    # alpha = 1: semantic only, identical order to similarity
    assert np.argsort(-rerank.causal_scores(loglik, sim, 1.0)).tolist() == np.argsort(-np.array(sim)).tolist()
    assert rerank.minmax([2.0, 2.0]).tolist() == [0.5, 0.5]


def test_causal_filter():
    claims = [{"concept": "pneumothorax", "assertion": "absent", "probability": 0.9}]
    assert "denies pneumothorax" in rerank.contradicts(claims, {"pneumothorax": 0.95})
    assert rerank.contradicts(claims, {"pneumothorax": 0.5}) is None
    claims = [{"concept": "mass", "assertion": "present", "probability": 0.01}]
    assert "very unlikely" in rerank.contradicts(claims, {"x": 1.0})


def test_pagerank_equals_networkx():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((12, 6))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    W = similarity_graph(v)
    W[3, :] = 0  # a dangling node
    pers = rng.uniform(0, 1, 12)
    ours = personalized_pagerank(W, pers, 0.85, tol=1e-14)
    g = nx.DiGraph()
    g.add_nodes_from(range(12))
    for i in range(12):
        for j in range(12):
            if W[i, j] > 0:
                g.add_edge(i, j, weight=W[i, j])
    p = {i: pers[i] for i in range(12)}
    ref = nx.pagerank(g, alpha=0.85, personalization=p, dangling=p, weight="weight", tol=1e-14, max_iter=10000)
    assert np.allclose(ours, [ref[i] for i in range(12)], atol=1e-8)


def test_router_on_synthetic_modalities():
    rng = np.random.default_rng(0)
    centers = {"radiology": rng.standard_normal(16), "pathology": rng.standard_normal(16), "ophthalmology": rng.standard_normal(16)}
    X, mods = [], []
    for m, c in centers.items():
        X.append(c + 0.3 * rng.standard_normal((50, 16)))
        mods += [m] * 50
    router = PrototypeRouter.fit(np.concatenate(X), mods)
    hits = 0
    for m, c in centers.items():
        for _ in range(20):
            got, scores = router.route(c + 0.3 * rng.standard_normal(16))
            hits += got == m
            assert set(scores) == set(centers)
    assert hits / 60 >= 0.95
