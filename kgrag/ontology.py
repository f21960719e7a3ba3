"""The concept catalogue (package data ``resources/concepts.jsonl``)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from kgrag.types import ROLES, Concept


@lru_cache(maxsize=1)
def concepts() -> dict[str, Concept]:
    """All concepts by id, in file order."""
    text = resources.files("kgrag.resources").joinpath("concepts.jsonl").read_text("utf-8")
    out: dict[str, Concept] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["role"] not in ROLES:
            raise ValueError(f"concepts.jsonl line {i}: unknown role {row['role']!r}")
        out[row["id"]] = Concept(
            id=row["id"],
            role=row["role"],
            name=row.get("name", row["id"]),
            synonyms=list(row.get("synonyms", [])),
            definition=row.get("definition", ""),
        )
    return out


def role_of(concept_id: str) -> str | None:
    c = concepts().get(concept_id)
    return c.role if c else None


def ids_with_role(role: str) -> list[str]:
    return [c.id for c in concepts().values() if c.role == role]
