"""The causal graph as a Bayesian network of binary concepts with noisy-OR CPDs.

Edges point the way a reader reasons, image finding → finding → diagnosis
(MCRAG's factorization pG(V_D, V_F | V_I) = p(V_F | V_I)·p(V_D | V_F)).  Every
concept v is a binary variable with the CPD

    P(v = 1 | pa) = 1 − (1 − leak_v) · Π_u (1 − p_uv · s_u)

over its accepted parents u (s_u ∈ {0, 1}).  A concept without parents is a root
with P(v = 1) = leak_v: at build time the leak is P(v | none of its parents
present) on the train split, so a root's leak is its base rate.

:class:`CausalGraph` is immutable.  :meth:`CausalGraph.surgery` is the one way to
change it: for each clamped concept it cuts the incoming edges and sets the leak to
the clamped value, so the concept becomes a root with P(v = 1) = value.  V_I (image
concepts with probability q) enters that way, as soft roots; do(F = 0) is the same
surgery with value 0.  A cycle among the accepted edges raises
:class:`~kgrag.errors.CycleError`.
"""

from __future__ import annotations

import graphlib
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kgrag.errors import CycleError, InputError


def _field(e: Any, name: str, default: Any = None) -> Any:
    if isinstance(e, Mapping):
        return e.get(name, default)
    return getattr(e, name, default)


def check_probability(what: str, x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} is {x!r}, not a number", fix="pass a probability in [0, 1]") from e
    if not (0.0 <= v <= 1.0) or math.isnan(v):
        raise InputError(f"{what} is {v}, not in [0, 1]", fix="pass a probability in [0, 1]")
    return v


@dataclass(frozen=True, slots=True)
class CausalGraph:
    """Accepted CAUSES edges and every concept's leak.

    ``leaks[v]`` is v's leak (the store's default leak already filled in for
    concepts that have none); ``parents[v]`` is a tuple of (u, p_uv) sorted by u.
    Concepts asked about but absent from the graph are roots with ``default_leak``.
    """

    leaks: Mapping[str, float]
    parents: Mapping[str, tuple[tuple[str, float], ...]]
    default_leak: float = 0.01
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    # -- construction ------------------------------------------------------------
    @classmethod
    def build(cls, leaks: Mapping[str, float | None], edges: Iterable[tuple[str, str, float]], *,
              default_leak: float = 0.01) -> CausalGraph:
        """From {concept: leak or None} and (src, dst, p) accepted edges.  Edge ends that
        are missing from ``leaks`` are added with the default leak."""
        default_leak = check_probability("the default leak", default_leak)
        lk: dict[str, float] = {}
        for c, v in leaks.items():
            lk[str(c)] = default_leak if v is None else check_probability(f"the leak of {c!r}", v)
        pa: dict[str, dict[str, float]] = {}
        for src, dst, p in edges:
            src, dst = str(src), str(dst)
            if src == dst:
                raise CycleError(f"accepted edge {src} -> {src} is a self-loop",
                                       fix=f"reject it: kgrag curate reject {src} {src}")
            pa.setdefault(dst, {})[src] = check_probability(f"edge {src}->{dst} p", p)
            lk.setdefault(src, default_leak)
            lk.setdefault(dst, default_leak)
        parents = {v: tuple(sorted(ps.items())) for v, ps in pa.items()}
        return cls(dict(sorted(lk.items())), dict(sorted(parents.items())), default_leak)

    @classmethod
    def from_edges(cls, edges: Iterable[Any], leaks: Mapping[str, float | None] | None = None, *,
                   default_leak: float = 0.01) -> CausalGraph:
        """From edge records (dicts or :class:`~kgrag.types.Edge`; only ``status == 'accepted'``
        ones count) and a {concept: leak} map."""
        acc = [(_field(e, "src"), _field(e, "dst"), _field(e, "p")) for e in edges if _field(e, "status") == "accepted"]
        return cls.build(dict(leaks or {}), acc, default_leak=default_leak)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], *, default_leak: float = 0.01) -> CausalGraph:
        """From the rows of ``get_causal_graph.cypher``: {id, leak, parents: [[u, p], ...]}."""
        leaks: dict[str, float | None] = {}
        edges: list[tuple[str, str, float]] = []
        for r in rows:
            leaks[r["id"]] = r.get("leak")
            edges += [(u, r["id"], p) for u, p in (r.get("parents") or [])]
        return cls.build(leaks, edges, default_leak=default_leak)

    # -- reading -------------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        return list(self.leaks)

    def leak(self, v: str) -> float:
        return self.leaks.get(v, self.default_leak)

    def parents_of(self, v: str) -> tuple[tuple[str, float], ...]:
        return self.parents.get(v, ())

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for v, ps in self.parents.items():
            for u, _ in ps:
                out.setdefault(u, []).append(v)
        return out

    def ancestors(self, targets: Iterable[str]) -> set[str]:
        """The targets and every concept with a directed path to one of them."""
        seen: set[str] = set()
        stack = list(targets)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            stack.extend(u for u, _ in self.parents_of(v))
        return seen

    def topological_order(self, nodes: Iterable[str] | None = None) -> list[str]:
        """Parents before children (ties by id); raises :class:`CycleError` on a cycle."""
        keep = set(self.leaks if nodes is None else nodes)
        ts: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
        for v in sorted(keep):
            ts.add(v, *sorted(u for u, _ in self.parents_of(v) if u in keep))
        try:
            ts.prepare()
        except graphlib.CycleError as e:
            cyc = list(e.args[1]) if len(e.args) > 1 else []
            raise CycleError(
                f"the accepted edges contain a cycle ({' -> '.join(reversed(cyc))}); exact inference needs a DAG",
                fix="reject one edge of the cycle (kgrag kg audit lists the cycles; kgrag curate reject SRC DST)",
            ) from e
        out: list[str] = []
        while ts.is_active():
            ready = sorted(ts.get_ready())
            out += ready
            ts.done(*ready)
        return out

    def fingerprint(self) -> str:
        """Hash of leaks and edges (numbers at full precision): the cache key of derived values."""
        fp = self._cache.get("fingerprint")
        if fp is None:
            h = hashlib.sha1()
            for v, lk in self.leaks.items():
                h.update(f"{v}\x00{lk!r}\x01".encode())
                for u, p in self.parents_of(v):
                    h.update(f"{u}\x00{p!r}\x02".encode())
            h.update(repr(self.default_leak).encode())
            fp = self._cache["fingerprint"] = h.hexdigest()
        return fp

    def structure_key(self) -> str:
        """Hash of the node set and parent sets only (no numbers)."""
        sk = self._cache.get("structure")
        if sk is None:
            h = hashlib.sha1()
            for v in self.leaks:
                h.update(f"{v}\x00".encode())
                for u, _ in self.parents_of(v):
                    h.update(f"{u}\x02".encode())
                h.update(b"\x01")
            sk = self._cache["structure"] = h.hexdigest()
        return sk

    # -- surgery -------------------------------------------------------------------
    def surgery(self, clamp: Mapping[str, float]) -> CausalGraph:
        """Each clamped concept v loses its incoming edges and becomes a root with
        P(v = 1) = clamp[v] (soft evidence q for V_I; 0 or 1 for do()).  Concepts
        not yet in the graph are added as such roots."""
        if not clamp:
            return self
        cl = {str(k): check_probability(f"the clamped value of {k!r}", v) for k, v in clamp.items()}
        leaks = dict(self.leaks)
        leaks.update(cl)
        parents = {v: ps for v, ps in self.parents.items() if v not in cl}
        return CausalGraph(dict(sorted(leaks.items())), parents, self.default_leak)

    def with_extra_nodes(self, nodes: Iterable[str]) -> CausalGraph:
        """The graph plus roots with the default leak for ``nodes`` it lacks."""
        missing = [n for n in nodes if n not in self.leaks]
        if not missing:
            return self
        leaks = dict(self.leaks)
        leaks.update((n, self.default_leak) for n in missing)
        return CausalGraph(dict(sorted(leaks.items())), self.parents, self.default_leak)

    def cpd(self, v: str, states: Mapping[str, float]) -> float:
        """P(v = 1 | pa) with parent states s_u from ``states`` (1/0, or a probability for the
        expected noisy-OR); a parent missing from ``states`` counts as 0."""
        none = 1.0 - self.leak(v)
        for u, p in self.parents_of(v):
            none *= 1.0 - p * states.get(u, 0.0)
        return 1.0 - none

    def to_edges(self) -> list[dict[str, Any]]:
        return [{"src": u, "dst": v, "p": p, "status": "accepted"} for v, ps in self.parents.items() for u, p in ps]
