"""Ablations that change the evidence or the graph: a random DAG and noise injection.

Random graph (MCRAG's random-edge ablation, ``--graph random``): as many accepted
edges as the learned graph, carrying the same strengths (a random permutation of
the learned ``p`` values), drawn uniformly without replacement from the pairs the
role order allows (image finding → finding, finding → finding, finding → diagnosis)
among the concepts the learned graph considered (every endpoint of an edge of any
status: the concepts the corpus speaks of often enough).  Finding → finding pairs
follow a random order of the findings, so the result is a DAG.  Leaks stay as
learned.

Noise (MR-RAG's robustness test, ``--noise F``): round(F · K) of the K evidence
items are replaced, at positions drawn uniformly, by irrelevant indexed studies:
ones whose present-concept set shares no concept with the query study's (and,
for a query study with no finding, ones that assert at least one).  Both draws
use a recorded seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from kgrag.types import ALLOWED_EDGE_ROLES


def random_dag(edges: Sequence[Mapping[str, Any]], roles: Mapping[str, str], *, seed: int) -> list[dict[str, Any]]:
    """Accepted edges of a random DAG with the same count and strengths as the
    accepted ``edges``; ``roles`` maps concept id → role."""
    rng = random.Random(seed)
    accepted = [e for e in edges if e.get("status") == "accepted"]
    nodes = sorted({x for e in edges for x in (e["src"], e["dst"]) if x in roles})
    pairs = _allowed_pairs(nodes, roles, rng)
    if len(pairs) < len(accepted):  # the considered concepts are too few: use every concept
        pairs = _allowed_pairs(sorted(roles), roles, rng)
    if len(pairs) < len(accepted):
        raise ValueError(f"only {len(pairs)} allowed pairs for {len(accepted)} edges")
    chosen = rng.sample(pairs, len(accepted))
    strengths = [float(e["p"]) for e in accepted]
    rng.shuffle(strengths)
    return [{"src": s, "dst": d, "p": p, "status": "accepted"} for (s, d), p in zip(chosen, strengths, strict=True)]


def _allowed_pairs(nodes: Sequence[str], roles: Mapping[str, str], rng: random.Random) -> list[tuple[str, str]]:
    findings = [n for n in nodes if roles[n] == "Finding"]
    rng.shuffle(findings)
    order = {n: i for i, n in enumerate(findings)}
    out = []
    for s in nodes:
        for d in nodes:
            if s == d or (roles[s], roles[d]) not in ALLOWED_EDGE_ROLES:
                continue
            if roles[s] == roles[d] == "Finding" and order[s] > order[d]:
                continue
            out.append((s, d))
    return out


def is_dag(edges: Sequence[Mapping[str, Any]]) -> bool:
    import graphlib

    ts = graphlib.TopologicalSorter()
    for e in edges:
        ts.add(e["dst"], e["src"])
    try:
        tuple(ts.static_order())
    except graphlib.CycleError:
        return False
    return True


def irrelevant_pool(query_set: set[str], doc_sets: Mapping[str, set[str]]) -> list[str]:
    """Indexed studies that share no present concept with the query study."""
    if query_set:
        return sorted(d for d, s in doc_sets.items() if not (s & query_set))
    return sorted(d for d, s in doc_sets.items() if s)


def inject_noise(evidence: Sequence[str], fraction: float, pool: Sequence[str], rng: random.Random
                 ) -> tuple[list[str], list[int]]:
    """Replace round(fraction · K) items of ``evidence`` by distinct ids from ``pool``
    that are not in the list.  Returns the new list and the replaced positions."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"noise fraction {fraction} is not in [0, 1]")
    k = len(evidence)
    m = int(round(fraction * k))
    avail = [x for x in pool if x not in set(evidence)]
    m = min(m, len(avail))
    if m == 0:
        return list(evidence), []
    pos = sorted(rng.sample(range(k), m))
    new = list(evidence)
    for p, x in zip(pos, rng.sample(avail, m), strict=True):
        new[p] = x
    return new, pos
