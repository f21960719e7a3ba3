"""Exact inference on the causal graph: variable elimination on a junction tree.

Every answer's probabilities come from here:

- :func:`posteriors`: P(c | V_I) for every concept, V_I entering as soft roots
  (surgery: a concept with image probability q loses its parents and gets
  P(c = 1) = q);
- :func:`interventions`: do(F = x) is the same surgery with value x, on top of V_I,
  then exact inference; each scenario is one clamp set;
- :func:`prior_marginals`: the marginals of the graph with nothing observed (the
  parent states pG falls back on);
- :func:`marginals`: the general call, with optional hard evidence (conditioning).

The algorithm: the concepts the targets depend on (their ancestors, plus those of
any evidence) are compiled once per graph structure into a junction tree — the
moral graph triangulated by a greedy min-fill elimination order, one clique per
eliminated variable, each clique linked to the clique of its first-eliminated
neighbour.  A noisy-OR with more than :data:`MAX_DIRECT_PARENTS` parents is first
decomposed into a chain of three-variable factors (Heckerman's temporal
decomposition: a_1 = leak OR (u_1 AND p_1), a_j = a_{j-1} OR (u_j AND p_j)), which is
exact and keeps cliques small.  Numbers are filled in per call and both passes of
sum-product message passing run for all scenarios at once (a leading batch axis
on every table), so one call answers V_I and each do() scenario together.  The
concepts every scenario clamps (V_I) lose their incoming edges in the compiled
structure; a concept clamped in some scenarios only (a do() outside V_I) keeps its
place with a CPD that ignores its parents there, which is the same distribution as
cutting its incoming edges.

The pure enumeration over all 2^n joint states (:func:`brute_force_marginals`) is
the reference for small graphs; tests also compare with pgmpy's
VariableElimination.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kgrag.causal.network import CausalGraph, check_probability
from kgrag.errors import InputError

#: a node with more parents than this is decomposed into a chain of OR factors
MAX_DIRECT_PARENTS = 3
#: cliques larger than this (2^22 entries per scenario) are refused
MAX_CLIQUE_VARS = 22
#: one junction tree for all targets while its cliques stay this small, else one per ancestral set
SINGLE_TREE_MAX_CLIQUE = 10
_LETTERS = string.ascii_letters
_COMPILED: dict[tuple[str, frozenset[str]], _Compiled | InputError] = {}
_COMPILED_MAX = 4096
_GROUPS: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple[frozenset[str], list[str]]]] = {}
_PRIORS: dict[str, dict[str, float]] = {}
_PRIORS_MAX = 16


@dataclass(frozen=True, slots=True)
class Scenario:
    """One inference question: concepts clamped by surgery (value = P(v = 1)) and hard evidence."""

    clamp: Mapping[str, float] = field(default_factory=dict)
    evidence: Mapping[str, int] = field(default_factory=dict)


# -- public calls -----------------------------------------------------------------------
def marginals(graph: CausalGraph, targets: Iterable[str] | None = None, *, clamp: Mapping[str, float] | None = None,
              evidence: Mapping[str, int] | None = None) -> dict[str, float]:
    """P(t = 1 | evidence) for each target in the graph after surgery on ``clamp``
    (all concepts of the graph when ``targets`` is None)."""
    return marginals_batch(graph, [Scenario(dict(clamp or {}), dict(evidence or {}))], targets)[0]


def marginals_batch(graph: CausalGraph, scenarios: Sequence[Scenario], targets: Iterable[str] | None = None
                    ) -> list[dict[str, float]]:
    """:func:`marginals` for several scenarios in one pass over one compiled structure."""
    targets = list(dict.fromkeys(graph.nodes if targets is None else targets))
    if not scenarios:
        return []
    if not targets:
        return [{} for _ in scenarios]
    scen = [_checked(s) for s in scenarios]
    graph = graph.with_extra_nodes([*targets, *(v for s in scen for v in (*s.clamp, *s.evidence))])
    # concepts every scenario clamps (V_I) lose their parents in the structure itself; a
    # concept only some scenarios clamp keeps them, with a CPD that ignores them there
    common = set.intersection(*(set(s.clamp) for s in scen))
    if common:
        graph = CausalGraph(graph.leaks, {v: ps for v, ps in graph.parents.items() if v not in common},
                            graph.default_leak)
    ev_nodes = sorted({v for s in scen for v in s.evidence})
    out: list[dict[str, float]] = [{} for _ in scen]
    for relevant, members in _groups(graph, targets, ev_nodes):
        for acc, got in zip(out, _compiled(graph, relevant).run(graph, scen, members), strict=True):
            acc.update(got)
    return [{t: m[t] for t in targets} for m in out]


def posteriors(graph: CausalGraph, observed: Mapping[str, float], targets: Iterable[str] | None = None
               ) -> dict[str, float]:
    """P(c | V_I): the concepts of V_I are roots with prior q (soft evidence), then exact inference."""
    return marginals(graph, targets, clamp=observed)


def interventions(graph: CausalGraph, observed: Mapping[str, float], do: Sequence[Mapping[str, float]],
                  targets: Iterable[str] | None = None) -> list[dict[str, float]]:
    """For each do-set in ``do``: P(t | do(...), V_I), graph surgery on V_I and the do-set
    (the do-set wins where both clamp a concept), then exact inference; in ``do`` order."""
    return marginals_batch(graph, [Scenario({**observed, **d}) for d in do], targets)


def prior_marginals(graph: CausalGraph, nodes: Iterable[str] | None = None) -> dict[str, float]:
    """The marginals of ``nodes`` (every concept when None) with nothing observed, cached
    per graph fingerprint: each is computed once per graph and process."""
    nodes = graph.nodes if nodes is None else list(dict.fromkeys(nodes))
    fp = graph.fingerprint()
    got = _PRIORS.get(fp)
    if got is None:
        if len(_PRIORS) >= _PRIORS_MAX:
            _PRIORS.pop(next(iter(_PRIORS)))
        got = _PRIORS[fp] = {}
    missing = [v for v in nodes if v not in got]
    if missing:
        got.update(marginals(graph, missing))
    return {v: got[v] for v in nodes}


def brute_force_marginals(graph: CausalGraph, targets: Iterable[str] | None = None, *,
                          clamp: Mapping[str, float] | None = None, evidence: Mapping[str, int] | None = None,
                          max_nodes: int = 18) -> dict[str, float]:
    """The definition, for checking: sum the joint over all 2^n states of the (surgered) graph."""
    g = graph.surgery(dict(clamp or {}))
    targets = list(dict.fromkeys(g.nodes if targets is None else targets))
    g = g.with_extra_nodes([*targets, *(evidence or {})])
    nodes = g.topological_order(g.ancestors([*targets, *(evidence or {})]))
    if len(nodes) > max_nodes:
        raise InputError(f"brute force over {len(nodes)} concepts is too large", fix="use marginals()")
    idx = {v: i for i, v in enumerate(nodes)}
    num = dict.fromkeys(targets, 0.0)
    z = 0.0
    for states in itertools.product((0, 1), repeat=len(nodes)):
        if evidence and any(states[idx[v]] != int(x) for v, x in evidence.items()):
            continue
        pr = 1.0
        for v in nodes:
            p1 = g.cpd(v, {u: float(states[idx[u]]) for u, _ in g.parents_of(v)})
            pr *= p1 if states[idx[v]] else 1.0 - p1
        z += pr
        for t in targets:
            if states[idx[t]]:
                num[t] += pr
    if z <= 0.0:
        raise InputError("the evidence has probability 0 under the graph", fix="check the evidence")
    return {t: num[t] / z for t in targets}


# -- internals ----------------------------------------------------------------------------
def _groups(graph: CausalGraph, targets: list[str], evidence: list[str]) -> list[tuple[frozenset[str], list[str]]]:
    key = (graph.structure_key(), tuple(targets), tuple(evidence))
    got = _GROUPS.get(key)
    if got is None:
        got = _make_groups(graph, targets, evidence)
        if len(_GROUPS) >= _COMPILED_MAX:
            _GROUPS.pop(next(iter(_GROUPS)))
        _GROUPS[key] = got
    return got


def _make_groups(graph: CausalGraph, targets: list[str], evidence: list[str]) -> list[tuple[frozenset[str], list[str]]]:
    """Which junction trees answer ``targets``: one over the ancestors of all of them (and
    of the evidence) when its cliques stay small; otherwise one per ancestral set, the
    targets whose ancestors lie inside a larger target's set answered with it.  A
    target's marginal needs only its ancestors and the evidence's (the rest is barren),
    and the moral graph of an ancestral set is an induced subgraph of the whole one, so
    a group's cliques are never larger; splitting pays when V_I cuts the graph into
    small pieces that one tree would moralise together."""
    anc_e = graph.ancestors(evidence) if evidence else set()
    union = frozenset(graph.ancestors(targets) | anc_e)
    try:
        if _compiled(graph, union).max_clique <= SINGLE_TREE_MAX_CLIQUE:
            return [(union, targets)]
    except InputError:  # too wide as one tree: the groups may still fit
        pass
    anc = _ancestor_sets(graph, union)
    groups: list[tuple[frozenset[str], list[str]]] = []
    for t in sorted(targets, key=lambda t: (-len(anc[t]), t)):
        for rel, members in groups:
            if anc[t] <= rel:
                members.append(t)
                break
        else:
            groups.append((frozenset(anc[t] | anc_e), [t]))
    return groups


def _ancestor_sets(graph: CausalGraph, nodes: frozenset[str]) -> dict[str, frozenset[str]]:
    """Each node's ancestral set (itself included), parents first."""
    out: dict[str, frozenset[str]] = {}
    for v in graph.topological_order(nodes):
        a = {v}
        for u, _ in graph.parents_of(v):
            a |= out[u]
        out[v] = frozenset(a)
    return out


def _checked(s: Scenario) -> Scenario:
    clamp = {str(k): check_probability(f"the value of {k!r}", v) for k, v in s.clamp.items()}
    ev = {}
    for k, v in s.evidence.items():
        if v not in (0, 1, True, False):
            raise InputError(f"evidence {k!r} = {v!r} is not 0 or 1", fix="hard evidence is 0 or 1")
        ev[str(k)] = int(v)
    return Scenario(clamp, ev)


def _compiled(graph: CausalGraph, relevant: frozenset[str]) -> _Compiled:
    """The junction tree of ``relevant`` (cached per structure; a structure too wide to
    compile is remembered too, so it is not triangulated again on every call)."""
    key = (graph.structure_key(), relevant)
    comp = _COMPILED.get(key)
    if comp is None:
        try:
            comp = _Compiled(graph, relevant)
        except InputError as e:
            comp = e
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = comp
    if isinstance(comp, InputError):
        raise comp
    return comp


@dataclass(slots=True)
class _Factor:
    scope: tuple[int, ...]      # variable indices; the factor's own variable first
    kind: str                   # root | family | chain_first | chain_link | chain_last
    node: str                   # the concept whose CPD this (part) is
    parents: tuple[str, ...]    # the concept parents it reads (family: all; chain: one)
    link: int = 0               # chain: which parent (0-based)


def _einsum(spec: str, *ops: np.ndarray) -> np.ndarray:
    # every operand's axes lie inside one clique, so the plain loop over the clique's
    # states is already the cheapest contraction; no path search
    return np.einsum(spec, *ops, optimize=False)


class _Compiled:
    """Junction tree of one graph structure over the ``relevant`` concepts."""

    def __init__(self, graph: CausalGraph, relevant: frozenset[str]) -> None:
        order = graph.topological_order(relevant)  # raises on a cycle
        self.nodes = order
        self.var_of: dict[str, int] = {}
        self.n_vars = 0
        factors: list[_Factor] = []

        def new_var(name: str) -> int:
            i = self.n_vars
            self.n_vars += 1
            if name:
                self.var_of[name] = i
            return i

        for v in order:
            new_var(v)
        for v in order:
            pa = [u for u, _ in graph.parents_of(v)]
            x = self.var_of[v]
            if not pa:
                factors.append(_Factor((x,), "root", v, ()))
            elif len(pa) <= MAX_DIRECT_PARENTS:
                factors.append(_Factor((x, *(self.var_of[u] for u in pa)), "family", v, tuple(pa)))
            else:
                prev = new_var("")
                factors.append(_Factor((prev, self.var_of[pa[0]]), "chain_first", v, (pa[0],), 0))
                for j in range(1, len(pa) - 1):
                    a = new_var("")
                    factors.append(_Factor((a, prev, self.var_of[pa[j]]), "chain_link", v, (pa[j],), j))
                    prev = a
                factors.append(_Factor((x, prev, self.var_of[pa[-1]]), "chain_last", v, (pa[-1],), len(pa) - 1))
        self.factors = factors
        self._tables: dict[str, list[np.ndarray]] = {}
        self._triangulate()

    # -- structure -------------------------------------------------------------------
    def _triangulate(self) -> None:
        n = self.n_vars
        nbr: list[set[int]] = [set() for _ in range(n)]
        for f in self.factors:
            for a in f.scope:
                nbr[a].update(b for b in f.scope if b != a)
        alive = set(range(n))
        elim: list[int] = []
        cliques: list[tuple[int, ...]] = []
        while alive:
            best, best_key = -1, None
            for x in alive:
                ns = list(nbr[x])
                fill = sum(1 for i, a in enumerate(ns) for b in ns[i + 1:] if b not in nbr[a])
                k = (fill, len(ns), x)
                if best_key is None or k < best_key:
                    best, best_key = x, k
            x = best
            ns = sorted(nbr[x])
            if len(ns) + 1 > MAX_CLIQUE_VARS:
                raise InputError(
                    f"exact inference needs a clique of {len(ns) + 1} concepts (limit {MAX_CLIQUE_VARS}): "
                    "the accepted graph is too densely connected",
                    fix="reject weak edges (kgrag kg show, kgrag curate reject) or raise the retention threshold tau",
                )
            cliques.append((x, *ns))
            for i, a in enumerate(ns):
                nbr[a].discard(x)
                for b in ns[i + 1:]:
                    nbr[a].add(b)
                    nbr[b].add(a)
            alive.discard(x)
            elim.append(x)
        pos = {x: i for i, x in enumerate(elim)}
        self.cliques = cliques                                     # clique i eliminates elim[i]
        self.max_clique = max((len(c) for c in cliques), default=0)
        self.seps = [c[1:] for c in cliques]
        self.parent = [min((pos[a] for a in c[1:]), default=-1) for c in cliques]
        self.children: list[list[int]] = [[] for _ in cliques]
        for i, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(i)
        self.clique_of_var = {x: pos[x] for x in elim}
        self.assign: list[list[int]] = [[] for _ in cliques]
        for fi, f in enumerate(self.factors):
            self.assign[min(pos[a] for a in f.scope)].append(fi)
        self._specs()

    def _specs(self) -> None:
        """Precomputed einsum subscripts ('...' is the scenario axis)."""

        def sub(vars_: Sequence[int], letters: Mapping[int, str]) -> str:
            return "..." + "".join(letters[v] for v in vars_)

        self.psi_spec: list[str] = []
        self.psi_pad: list[bool] = []
        self.up_spec: list[str] = []
        self.down_spec: list[dict[int, str]] = []
        self.belief_spec: list[str] = []
        for i, c in enumerate(self.cliques):
            letters = {v: _LETTERS[k] for k, v in enumerate(c)}
            out = sub(c, letters)
            ins = [sub(self.factors[fi].scope, letters) for fi in self.assign[i]]
            covered = {v for fi in self.assign[i] for v in self.factors[fi].scope}
            self.psi_pad.append(bool(ins) and covered != set(c))
            if self.psi_pad[-1]:
                ins.append(out)  # a table of ones over the whole clique
            self.psi_spec.append(",".join(ins) + "->" + out if ins else "")
            kids = [sub(self.seps[j], letters) for j in self.children[i]]
            self.up_spec.append(",".join([out, *kids]) + "->" + sub(self.seps[i], letters))
            par = [sub(self.seps[i], letters)] if self.parent[i] >= 0 else []
            downs = {}
            for j in self.children[i]:
                others = [sub(self.seps[k], letters) for k in self.children[i] if k != j]
                downs[j] = ",".join([out, *par, *others]) + "->" + sub(self.seps[j], letters)
            self.down_spec.append(downs)
            self.belief_spec.append(",".join([out, *par, *kids]) + "->..." + letters[c[0]])

    # -- numbers ---------------------------------------------------------------------
    def _table(self, f: _Factor, graph: CausalGraph) -> np.ndarray:
        """The factor's table (leading axis of length 1), indexed by its scope's states."""
        if f.kind == "root":
            lk = graph.leak(f.node)
            return np.array([[1.0 - lk, lk]])
        ps = dict(graph.parents_of(f.node))
        if f.kind == "family":
            none = np.array(1.0 - graph.leak(f.node))
            for u in f.parents:  # P(v = 0 | pa) = (1 - leak) prod (1 - p_u)^{s_u}
                none = np.multiply.outer(none, np.array([1.0, 1.0 - ps[u]]))
            return np.stack([none, 1.0 - none])[None]
        (u,) = f.parents
        keep = np.array([1.0, 1.0 - ps[u]])       # P(no firing from u | s_u)
        if f.kind == "chain_first":               # P(a_1 = 0 | u) = (1 - leak)(1 - p)^{s_u}
            zero = (1.0 - graph.leak(f.node)) * keep
            return np.stack([zero, 1.0 - zero])[None]
        zero = np.zeros((2, 2))                   # P(a_j = 0 | a_{j-1}, u) = [a_{j-1} = 0] (1 - p)^{s_u}
        zero[0] = keep
        return np.stack([zero, 1.0 - zero])[None]

    def _base_tables(self, graph: CausalGraph) -> list[np.ndarray]:
        """Every factor's table for this graph's numbers (kept for the last few graphs)."""
        fp = graph.fingerprint()
        got = self._tables.get(fp)
        if got is None:
            got = [self._table(f, graph) for f in self.factors]
            for t in got:
                t.flags.writeable = False  # shared between calls: clamping copies
            if len(self._tables) >= 4:
                self._tables.pop(next(iter(self._tables)))
            self._tables[fp] = got
        return got

    def run(self, graph: CausalGraph, scenarios: Sequence[Scenario], targets: Sequence[str]) -> list[dict[str, float]]:
        b = len(scenarios)
        tables = []
        for f, t in zip(self.factors, self._base_tables(graph), strict=True):
            clamped = [(k, s.clamp[f.node]) for k, s in enumerate(scenarios) if f.node in s.clamp]
            if clamped and f.kind in ("root", "family", "chain_last"):
                t = np.repeat(t, b, axis=0)
                for k, q in clamped:  # the CPD ignores the parents: P(v = 1 | pa) = q
                    t[k] = 0.0
                    t[k][0] = 1.0 - q
                    t[k][1] = q
            tables.append(t)
        psi: list[np.ndarray] = []
        for i, c in enumerate(self.cliques):
            if self.assign[i]:
                ops = [tables[fi] for fi in self.assign[i]]
                if self.psi_pad[i]:
                    ops.append(np.ones((1,) + (2,) * len(c)))
                p = _einsum(self.psi_spec[i], *ops)
            else:
                p = np.ones((1,) + (2,) * len(c))
            if c[0] < len(self.nodes):  # a concept (not a chain variable): its hard evidence, if any
                ind = [s.evidence.get(self.nodes[c[0]]) for s in scenarios]
                if any(x is not None for x in ind):
                    e = np.ones((b, 2))
                    for k, x in enumerate(ind):
                        if x is not None:
                            e[k, 1 - x] = 0.0
                    p = p * e.reshape((b, 2) + (1,) * (len(c) - 1))
            psi.append(p)
        up: list[np.ndarray | None] = [None] * len(self.cliques)
        for i in range(len(self.cliques)):  # children are eliminated first
            if self.parent[i] >= 0:
                up[i] = _einsum(self.up_spec[i], psi[i], *(up[j] for j in self.children[i]))
        down: list[np.ndarray | None] = [None] * len(self.cliques)
        for i in reversed(range(len(self.cliques))):
            par = [down[i]] if self.parent[i] >= 0 else []
            for j in self.children[i]:
                others = [up[k] for k in self.children[i] if k != j]
                down[j] = _einsum(self.down_spec[i][j], psi[i], *par, *others)
        out: list[dict[str, float]] = [{} for _ in scenarios]
        for t in targets:
            i = self.clique_of_var[self.var_of[t]]
            par = [down[i]] if self.parent[i] >= 0 else []
            m = _einsum(self.belief_spec[i], psi[i], *par, *(up[j] for j in self.children[i]))
            m = np.broadcast_to(m, (b, 2))
            z = m.sum(axis=1)
            if np.any(z <= 0.0):
                raise InputError("the evidence has probability 0 under the graph", fix="check the evidence")
            for k in range(b):
                out[k][t] = float(m[k, 1] / z[k])
        return out


def compiled_info(graph: CausalGraph, targets: Iterable[str] | None = None,
                  observed: Iterable[str] = ()) -> dict[str, Any]:
    """The junction trees that answer ``targets`` with ``observed`` concepts as roots (for
    benchmarks and diagnostics)."""
    targets = list(graph.nodes if targets is None else targets)
    g = graph.with_extra_nodes([*targets, *observed])
    cut = set(observed)
    g = CausalGraph(g.leaks, {v: ps for v, ps in g.parents.items() if v not in cut}, g.default_leak)
    trees = [_compiled(g, rel) for rel, _ in _groups(g, targets, [])]
    return {"trees": len(trees), "concepts": len(set().union(*(t.nodes for t in trees))) if trees else 0,
            "variables": sum(t.n_vars for t in trees), "cliques": sum(len(t.cliques) for t in trees),
            "max_clique": max((t.max_clique for t in trees), default=0)}
