"""Causal paths for explanations, and the cycle check (pure Python, no graph engine).

A path's strength is q_o · Π p_e along a simple accepted path of 1..max_len edges
from an observed concept o.  Strengths explain an answer ("lung_opacity →
consolidation → pneumonia, 0.56"); they are not probabilities, and combining them
by noisy-OR double-counts shared edges, so no probability is computed from them:
posteriors come from :mod:`kgrag.causal.inference`, the rerank term from
:mod:`kgrag.causal.likelihood`.  This module is the reference of ``get_paths.cypher``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kgrag.types import CausalPath


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


def find_cycles(edges: Iterable[Any], statuses: Iterable[str] = ("accepted",)) -> list[list[str]]:
    """Elementary cycles among edges with the given statuses (networkx; not Cypher)."""
    import networkx as nx

    keep = set(statuses)
    g = nx.DiGraph()
    g.add_edges_from(
        (_field(e, "src"), _field(e, "dst")) for e in edges if _field(e, "status") in keep
    )
    return [list(c) for c in nx.simple_cycles(g)]
