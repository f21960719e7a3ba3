"""Graph refinement: significance, conditional-independence pruning, DAG, τ.

- **Significance.** Each candidate's G-test p-value is corrected across all
  candidates (Holm by default, or Benjamini–Hochberg); candidates not significant
  at ``alpha`` are ``rejected`` (statistics) — priors without support stay
  ``proposed`` for a human to judge.
- **Mediators and common causes.** c → e is pruned (``rejected``, the note names
  the separating concept) when some m adjacent to both c and e among the
  significant candidates (a mediator c → m → e, or a common cause such as a
  diagnosis behind two findings) makes c ⟂ e | m: the CMH test over the strata
  m = 0/1 is not significant at ``alpha`` (an order-1 PC-style test).  The recorded ``p_value`` of a kept
  edge is the largest of its marginal (corrected) and conditional p-values.
- **DAG.** Finding → Finding edges can form cycles; each cycle among surviving
  edges is broken at its weakest edge (lowest causal power), and logged.
- **Retention τ.** Surviving edges are ranked by evidence = power × ln(1 + support);
  the top ⌈τ·n⌉ are ``accepted``, the rest ``proposed``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kgrag.kg import stats

log = logging.getLogger(__name__)


@dataclass
class RefineResult:
    statuses: list[tuple[Any, str]] = field(default_factory=list)
    n_not_significant: int = 0
    n_pruned_ci: int = 0
    n_cycle_breaks: int = 0
    tau_curve: list[tuple[float, int]] = field(default_factory=list)


def evidence(c: Any) -> float:
    return c.power * math.log1p(c.table.n11)


def retain(n: int, tau: float) -> int:
    return min(n, math.ceil(tau * n - 1e-12))


def break_cycles(edges: list[Any]) -> list[Any]:
    """Remove the weakest edge of each cycle until the graph is a DAG; returns the removed."""
    import networkx as nx

    removed = []
    while True:
        g = nx.DiGraph()
        for e in edges:
            g.add_edge(e.src, e.dst, obj=e)
        try:
            cyc = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            return removed
        weakest = min((g.edges[u, v]["obj"] for u, v, *_ in cyc), key=lambda e: (e.power, e.table.n11, e.src, e.dst))
        log.warning("cycle %s broken at its weakest edge %s -> %s (power %.3f)",
                    " -> ".join(u for u, *_ in cyc), weakest.src, weakest.dst, weakest.power)
        edges.remove(weakest)
        removed.append(weakest)


def refine(cands: Sequence[Any], study_concepts: Mapping[str, Mapping[str, str]], *, alpha: float, correction: str,
           tau: float, uncertain_as: str = "ignore") -> RefineResult:

    res = RefineResult()
    adj = stats.adjust([c.p_value_marginal for c in cands], correction)
    alive, statuses = [], {}
    for c, p in zip(cands, adj, strict=True):
        c.p_value = p
        if p <= alpha and c.power > 0:
            alive.append(c)
        else:
            statuses[id(c)] = "proposed" if c.source != "statistics" else "rejected"
            res.n_not_significant += 1
    by_key = {(c.src, c.dst): c for c in alive}
    pruned = []
    for c in alive:
        nbr: dict[str, set[str]] = {}
        for s_, d_ in by_key:
            nbr.setdefault(s_, set()).add(d_)
            nbr.setdefault(d_, set()).add(s_)
        mediators = sorted((nbr.get(c.src, set()) & nbr.get(c.dst, set())) - {c.src, c.dst})
        for m in mediators:
            strata = [stats.table_for(study_concepts, c.src, c.dst, uncertain_as, where=(m, v)) for v in (0, 1)]
            _, p = stats.cmh_test(strata)
            if p > alpha:
                c.pruned_by, c.p_value = m, max(c.p_value, p)
                pruned.append(c)
                break
            c.p_value = max(c.p_value, p)
    for c in pruned:
        statuses[id(c)] = "rejected"
        res.n_pruned_ci += 1
    survivors = [c for c in alive if c not in pruned]
    for c in break_cycles(survivors):
        statuses[id(c)] = "rejected"
        c.pruned_by = "cycle (weakest edge)"
        res.n_cycle_breaks += 1
    ranked = sorted(survivors, key=lambda c: (-evidence(c), c.src, c.dst))
    keep = retain(len(ranked), tau)
    for i, c in enumerate(ranked):
        c.evidence = evidence(c)
        statuses[id(c)] = "accepted" if i < keep else "proposed"
    res.tau_curve = [(t / 10, retain(len(ranked), t / 10)) for t in range(1, 11)]
    res.statuses = [(c, statuses[id(c)]) for c in cands]
    return res


def leaks(study_concepts: Mapping[str, Mapping[str, str]], accepted: Iterable[Any], uncertain_as: str,
          default: float) -> dict[str, float]:
    """P(c present | none of its accepted parents present) over the train split (Laplace +1/+2)."""
    from kgrag.ontology import concepts

    parents: dict[str, list[str]] = {}
    for e in accepted:
        parents.setdefault(e.dst, []).append(e.src)
    out = {}
    for c in concepts():
        k = n = 0
        for a in study_concepts.values():
            if any(stats.indicator(a, p, uncertain_as) for p in parents.get(c, [])):
                continue
            x = stats.indicator(a, c, uncertain_as)
            if x is None:
                continue
            n += 1
            k += x
        out[c] = (k + 1) / (n + 2) if n else default
    return out
