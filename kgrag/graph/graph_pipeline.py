"""Pipelined read-only graph calls: queue several, send them together, read each
answer when it is needed (:class:`GraphPipeline`, :class:`Pending`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from kgrag.errors import GraphStoreError


@dataclass(slots=True)
class _Plan:
    """A read statement and how to turn its rows into the method's value; ``name=None``
    when the answer needs no query (e.g. no targets), then ``value`` is the answer."""

    name: str | None
    params: dict[str, Any] = field(default_factory=dict)
    finish: Callable[[list[dict[str, Any]]], Any] = list
    value: Any = None


def _once(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` called at the first call of the result, its value (or error) kept."""
    box: list[Any] = []

    def get() -> Any:
        if not box:
            try:
                box.append((True, fn()))
            except Exception as e:  # kept and raised again to every reader
                box.append((False, e))
        ok, v = box[0]
        if not ok:
            raise v
        return v

    return get


class PlanningStore(Protocol):
    """What a :class:`GraphPipeline` needs of its store (a ``CypherGraphStore``)."""

    def _prepare(self, name: str, params: dict[str, Any]) -> tuple[str, str, dict[str, Any]]: ...

    def _send(self, calls: list[tuple[str, str, dict[str, Any]]], executor: Executor | None) -> Any: ...

    def _graph_plan(self) -> _Plan: ...

    def _posteriors_plan(self, *args: Any, **kw: Any) -> _Plan: ...

    def _interventions_plan(self, *args: Any, **kw: Any) -> _Plan: ...

    def _scores_plan(self, *args: Any, **kw: Any) -> _Plan: ...

    def _paths_plan(self, *args: Any, **kw: Any) -> _Plan: ...


class Pending:
    """The answer of one call queued on a :class:`GraphPipeline`; ``result()`` waits for it."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[], Any]) -> None:
        self._get = get

    def result(self) -> Any:
        return self._get()


class GraphPipeline:
    """Read-only graph calls queued, sent to the engine together by :meth:`send`, and
    answered in order: the caller does other work (stage-1 retrieval) while the engine
    computes.  ``posteriors`` and ``interventions`` run exact inference in Python on
    the subgraph the engine returns, when their answer is first read.  On FalkorDB the
    statements are written to one connection at once and the replies read back when
    asked for; on other backends they run on ``executor``
    (or each at its first read).  Values are those of the store's methods of the same
    name.  :meth:`close` drops replies nobody read (also done after the last read).
    """

    def __init__(self, store: PlanningStore) -> None:
        self._store = store
        self._plans: list[_Plan] = []
        self._readers: list[Callable[[], list[dict[str, Any]]]] | None = None
        self._close: Callable[[], None] | None = None

    def _add(self, plan: _Plan) -> Pending:
        if self._readers is not None:
            raise GraphStoreError("this graph pipeline was sent already", fix="queue every call before send()")
        i = len(self._plans)
        self._plans.append(plan)
        return Pending(_once(lambda: self._answer(i)))

    def paths(self, *args: Any, **kw: Any) -> Pending:
        return self._add(self._store._paths_plan(*args, **kw))

    def causal_graph(self) -> Pending:
        return self._add(self._store._graph_plan())

    def posteriors(self, *args: Any, **kw: Any) -> Pending:
        return self._add(self._store._posteriors_plan(*args, **kw))

    def interventions(self, *args: Any, **kw: Any) -> Pending:
        return self._add(self._store._interventions_plan(*args, **kw))

    def causal_scores(self, *args: Any, **kw: Any) -> Pending:
        return self._add(self._store._scores_plan(*args, **kw))

    def send(self, executor: Executor | None = None) -> GraphPipeline:
        """Send the queued statements; calls of the same statement with the same parameters
        (e.g. ``causal_graph``, ``posteriors`` and ``interventions``, which all read the
        subgraph) go to the engine once and share the reply."""
        names = [p.name for p in self._plans]
        keys: dict[tuple[str, str], int] = {}
        calls = []
        slot: list[int | None] = []
        for i, p in enumerate(self._plans):
            if p.name is None:
                slot.append(None)
                continue
            # parameters are compared only between calls of one statement (they can be long)
            key = (p.name, json.dumps(p.params, sort_keys=True, default=str) if names.count(p.name) > 1 else str(i))
            if key not in keys:
                keys[key] = len(calls)
                calls.append(self._store._prepare(p.name, p.params))
            slot.append(keys[key])
        readers = self._store._send(calls, executor) if calls else []
        shared = [_once(r) for r in readers]
        self._readers = [None if k is None else shared[k] for k in slot]
        self._close = getattr(readers, "close", None)
        return self

    def _answer(self, i: int) -> Any:
        if self._readers is None:
            raise GraphStoreError("graph pipeline read before send()", fix="call send() after queueing the calls")
        plan = self._plans[i]
        return plan.value if plan.name is None else plan.finish(self._readers[i]())

    def __enter__(self) -> GraphPipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None
