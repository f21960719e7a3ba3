"""Row helpers shared by the Cypher backends: plain values from driver results,
batch de-duplication by key, id checks and the edge row every write sends."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from typing import Any

from kgrag.errors import InputError
from kgrag.types import EDGE_STATUSES, Edge

EDGE_FIELDS = [f.name for f in fields(Edge)]


_SCALARS = frozenset({int, float, str, bool, type(None)})


def plain(v: Any) -> Any:
    """Driver results (OrderedDicts, tuples) as plain dicts and lists."""
    t = type(v)
    if t in _SCALARS:  # the common case first: an ABC isinstance check costs more than the value
        return v
    if t is list or t is tuple:
        return [x if type(x) in _SCALARS else plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    return v


def as_dict(x: Any) -> dict[str, Any]:
    if is_dataclass(x):
        return asdict(x)
    return dict(x)


def dedupe(rows: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Hashable]) -> tuple[list[dict], int]:
    """Keep the last row per key (order of first appearance); return (rows, dropped)."""
    out: dict[Hashable, dict] = {}
    n = 0
    for r in rows:
        n += 1
        k = key(r)
        out.pop(k, None)
        out[k] = dict(r)
    return list(out.values()), n - len(out)


def chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def check_id(kind: str, value: Any) -> str:
    """Ids are non-empty strings without leading/trailing whitespace.

    Besides being data errors, such ids crash FalkorDB 4.16.3: a MERGE of a value
    ending in whitespace on a property under GRAPH.CONSTRAINT UNIQUE segfaults the
    server (EnforceUniqueEntity).  They are rejected here, before any engine sees them.
    """
    if not isinstance(value, str) or not value or value != value.strip():
        raise InputError(
            f"{kind} id {value!r} is empty, not a string, or has leading/trailing whitespace",
            fix=f"strip the {kind} id in the source record",
        )
    return value


def edge_row(e: Edge | Mapping[str, Any]) -> dict[str, Any]:
    d = as_dict(e)
    row = {k: d.get(k) for k in EDGE_FIELDS}
    check_id("concept", row["src"])
    check_id("concept", row["dst"])
    base = Edge(src=d["src"], dst=d["dst"], p=d.get("p", 0.0))
    for k in EDGE_FIELDS:
        if row[k] is None:
            row[k] = getattr(base, k)
    if row["status"] not in EDGE_STATUSES:
        raise InputError(
            f"edge {row['src']}->{row['dst']}: status {row['status']!r} is not one of {EDGE_STATUSES}",
            fix="use proposed, accepted or rejected",
        )
    p = row["p"]
    if not isinstance(p, int | float) or not 0.0 <= float(p) <= 1.0:
        raise InputError(f"edge {row['src']}->{row['dst']}: p={p!r} is not in [0, 1]", fix="clip p to [0, 1]")
    row["p"] = float(p)
    row["locked"] = bool(row["locked"])
    for k in ("evidence_studies", "evidence_spans"):
        row[k] = [str(x) for x in (row[k] or [])]
    return row
