"""Statistics for candidate causal edges (pure Python + scipy's distributions).

For a cause c and an effect e over studies where both are decided:

    table       n11 = #(c, e)   n10 = #(c, ¬e)   n01 = #(¬c, e)   n00 = #(¬c, ¬e)
    P(e|c)      n11 / (n11 + n10)
    P(e|¬c)     n01 / (n01 + n00)
    power       (P(e|c) − P(e|¬c)) / (1 − P(e|¬c)), clipped to [0, 1]   (Cheng's causal power)
    lift        P(e|c) / P(e)
    ci          power at the 95% Wilson bounds of P(e|c), P(e|¬c) held fixed

Tests: the G-test (likelihood-ratio chi-square, 1 df) for c–e; the
Cochran–Mantel–Haenszel test (1 df, no continuity correction) for c ⟂ e | m.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Table:
    n11: int
    n10: int
    n01: int
    n00: int

    @property
    def n(self) -> int:
        return self.n11 + self.n10 + self.n01 + self.n00


def p_e_given_c(t: Table) -> float:
    d = t.n11 + t.n10
    return t.n11 / d if d else 0.0


def p_e_given_not_c(t: Table) -> float:
    d = t.n01 + t.n00
    return t.n01 / d if d else 0.0


def causal_power_from(pc: float, pnc: float) -> float:
    if pnc >= 1.0:
        return 0.0
    return min(1.0, max(0.0, (pc - pnc) / (1.0 - pnc)))


def causal_power(t: Table) -> float:
    return causal_power_from(p_e_given_c(t), p_e_given_not_c(t))


def lift(t: Table) -> float:
    pe = (t.n11 + t.n01) / t.n if t.n else 0.0
    return p_e_given_c(t) / pe if pe else 0.0


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def power_ci(t: Table) -> tuple[float, float]:
    lo, hi = wilson(t.n11, t.n11 + t.n10)
    pnc = p_e_given_not_c(t)
    return (causal_power_from(lo, pnc), causal_power_from(hi, pnc))


def g_test(t: Table) -> tuple[float, float]:
    """(G statistic, p-value) for independence of c and e (1 df)."""
    from scipy.stats import chi2

    obs = [[t.n11, t.n10], [t.n01, t.n00]]
    n = t.n
    if n == 0:
        return (0.0, 1.0)
    rows = [t.n11 + t.n10, t.n01 + t.n00]
    cols = [t.n11 + t.n01, t.n10 + t.n00]
    if 0 in rows or 0 in cols:
        return (0.0, 1.0)
    g = 0.0
    for i in range(2):
        for j in range(2):
            o = obs[i][j]
            if o:
                g += o * math.log(o / (rows[i] * cols[j] / n))
    g *= 2.0
    return (g, float(chi2.sf(g, 1)))


def cmh_test(strata: Sequence[Table]) -> tuple[float, float]:
    """Cochran–Mantel–Haenszel chi-square (1 df, no continuity correction) and p-value."""
    from scipy.stats import chi2

    num = 0.0
    var = 0.0
    for t in strata:
        n = t.n
        if n < 2:
            continue
        r1, c1 = t.n11 + t.n10, t.n11 + t.n01
        r0, c0 = n - r1, n - c1
        num += t.n11 - r1 * c1 / n
        var += r1 * r0 * c1 * c0 / (n * n * (n - 1))
    if var <= 0:
        return (0.0, 1.0)
    stat = num * num / var
    return (stat, float(chi2.sf(stat, 1)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as the input)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adj = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adj[i] = running
    return adj


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i], reverse=True)
    adj = [0.0] * m
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, pvalues[i] * m / rank)
        adj[i] = min(1.0, running)
    return adj


def adjust(pvalues: Sequence[float], method: str) -> list[float]:
    if method == "holm":
        return holm(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    return list(pvalues)


def indicator(assertions: Mapping[str, str], concept: str, uncertain_as: str) -> int | None:
    a = assertions.get(concept)
    if a == "present":
        return 1
    if a == "uncertain":
        return {"present": 1, "absent": 0}.get(uncertain_as)
    return 0


def table_for(study_concepts: Mapping[str, Mapping[str, str]], c: str, e: str, uncertain_as: str,
              where: tuple[str, int] | None = None) -> Table:
    n = [0, 0, 0, 0]
    for a in study_concepts.values():
        if where is not None:
            w = indicator(a, where[0], uncertain_as)
            if w is None or w != where[1]:
                continue
        x, y = indicator(a, c, uncertain_as), indicator(a, e, uncertain_as)
        if x is None or y is None:
            continue
        n[(1 - x) * 2 + (1 - y)] += 1
    return Table(*n)
