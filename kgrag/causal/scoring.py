"""Pure-Python reference of the causal model (the oracle for the Cypher statements).

Plain dicts, no graph engine.  The model is defined in :mod:`kgrag.graph.store`:

    strength(path) = q_o * prod(p_e)             simple accepted paths, 1..max_len edges
    P(c | V_I)     = 1 - (1 - leak_c) * (1 - q_c) * prod over paths (1 - strength)
    loglik(report) = mean(log P(c) for present c, log(1 - P(c)) for absent c), clipped at LOG_EPS
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kgrag.types import CandidateScore, CausalPath, ReportCandidate

LOG_EPS = 1e-6  # probabilities are clipped here before a log


def _field(e: Any, name: str, default: Any = None) -> Any:
    if isinstance(e, Mapping):
        return e.get(name, default)
    return getattr(e, name, default)


def accepted_adjacency(edges: Iterable[Any]) -> dict[str, list[tuple[str, float]]]:
    adj: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for e in edges:
        if _field(e, "status") == "accepted":
            adj[_field(e, "src")].append((_field(e, "dst"), float(_field(e, "p"))))
    return adj


def enumerate_paths(
    adj: Mapping[str, list[tuple[str, float]]], source: str, max_len: int
) -> Iterable[tuple[list[str], float]]:
    """Every simple path of 1..max_len edges from ``source``: (nodes, product of p)."""
    stack: list[tuple[list[str], float]] = [([source], 1.0)]
    while stack:
        nodes, prod = stack.pop()
        if len(nodes) - 1 >= max_len:
            continue
        for dst, p in adj.get(nodes[-1], ()):
            if dst in nodes:
                continue
            nxt = (nodes + [dst], prod * p)
            yield nxt
            stack.append(nxt)


def concept_probabilities(
    edges: Iterable[Any],
    observed: Mapping[str, float],
    targets: Sequence[str],
    *,
    leaks: Mapping[str, float | None] | None = None,
    max_len: int = 3,
    default_leak: float = 0.01,
) -> dict[str, float]:
    adj = accepted_adjacency(edges)
    leaks = leaks or {}
    none_fires: dict[str, float] = {t: 1.0 for t in targets}
    tset = set(targets)
    for o, q in observed.items():
        for nodes, prod in enumerate_paths(adj, o, max_len):
            if nodes[-1] in tset:
                none_fires[nodes[-1]] *= 1.0 - q * prod
    out = {}
    for t in targets:
        leak = leaks.get(t)
        leak = default_leak if leak is None else leak
        q_self = observed.get(t, 0.0)
        out[t] = 1.0 - (1.0 - leak) * (1.0 - q_self) * none_fires[t]
    return out


def _loglik(prob: float, assertion: str) -> float:
    x = prob if assertion == "present" else 1.0 - prob
    return math.log(max(x, LOG_EPS))


def score_candidates(probs: Mapping[str, float], candidates: Sequence[ReportCandidate]) -> list[CandidateScore]:
    """Each candidate's mean log-likelihood from P(c | V_I) (``probs`` holds every concept it asserts).

    Shared by the graph backends (which compute ``probs`` in Cypher) and the reference
    below; a concept listed twice under the same assertion counts once.
    """
    out = []
    for cand in candidates:
        items = [(c, "present") for c in dict.fromkeys(cand.present)] + [(c, "absent") for c in dict.fromkeys(cand.absent)]
        if not items:
            out.append(CandidateScore(cand.id, None, 0, []))
            continue
        lls = [_loglik(probs[c], a) for c, a in items]
        out.append(
            CandidateScore(
                cand.id,
                sum(lls) / len(lls),
                len(items),
                [{"concept": c, "assertion": a, "probability": probs[c]} for c, a in items],
            )
        )
    return out


def candidate_targets(candidates: Sequence[ReportCandidate]) -> list[str]:
    """The concepts any candidate asserts or denies, sorted."""
    return sorted({c for cand in candidates for c in (*cand.present, *cand.absent)})


def candidate_scores(
    edges: Iterable[Any],
    candidates: Sequence[ReportCandidate],
    observed: Mapping[str, float],
    *,
    leaks: Mapping[str, float | None] | None = None,
    max_len: int = 3,
    default_leak: float = 0.01,
) -> list[CandidateScore]:
    probs = concept_probabilities(
        list(edges), observed, candidate_targets(candidates), leaks=leaks, max_len=max_len, default_leak=default_leak
    )
    return score_candidates(probs, candidates)


def paths(
    edges: Iterable[Any],
    observed: Mapping[str, float],
    targets: Sequence[str],
    *,
    max_len: int = 3,
    limit: int = 5,
) -> dict[str, list[CausalPath]]:
    adj = accepted_adjacency(edges)
    tset = set(targets)
    found: dict[str, list[CausalPath]] = {t: [] for t in targets}
    for o, q in observed.items():
        if q <= 0.0:  # a concept the query says is absent starts no explanation
            continue
        for nodes, prod in enumerate_paths(adj, o, max_len):
            if nodes[-1] in tset:
                found[nodes[-1]].append(CausalPath(nodes, q * prod))
    for t in found:
        found[t].sort(key=lambda p: (-p.strength, p.nodes))
        found[t] = found[t][:limit]
    return found


def counterfactuals(
    edges: Iterable[Any],
    observed: Mapping[str, float],
    targets: Sequence[str],
    *,
    leaks: Mapping[str, float | None] | None = None,
    max_len: int = 3,
    default_leak: float = 0.01,
    removals: Sequence[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """do(o = absent) for each o in ``removals`` (default: every observed concept):
    P(target) recomputed from the evidence without o, in ``removals`` order."""
    edges = list(edges)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for o in observed if removals is None else removals:
        rest = {k: v for k, v in observed.items() if k != o}
        probs = concept_probabilities(
            edges, rest, targets, leaks=leaks, max_len=max_len, default_leak=default_leak
        )
        for t in targets:
            out[t].append({"remove": o, "probability": probs[t]})
    return out


def find_cycles(edges: Iterable[Any], statuses: Iterable[str] = ("accepted",)) -> list[list[str]]:
    """Elementary cycles among edges with the given statuses (networkx; not Cypher)."""
    import networkx as nx

    keep = set(statuses)
    g = nx.DiGraph()
    g.add_edges_from(
        (_field(e, "src"), _field(e, "dst")) for e in edges if _field(e, "status") in keep
    )
    return [list(c) for c in nx.simple_cycles(g)]
