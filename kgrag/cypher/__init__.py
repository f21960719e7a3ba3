"""Every Cypher statement kgrag runs, one per file, loaded by name.

Each file opens with a header::

    // params: $rows, $overwrite_locked      (or "none")
    // returns: src, dst, kept               (or "none")
    // mode: write                           (or "read": Neo4j routes by it)

Values are always ``$parameters``.  A label that must be interpolated appears as
``{label}`` and is filled only from :data:`LABEL_ALLOWLIST` by
:meth:`Statement.with_label`.  ``cypher/<dialect>/<name>.cypher`` overrides the
shared ``cypher/<name>.cypher`` for statements whose dialects differ (DDL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

DIALECTS = ("falkordb", "neo4j")
LABEL_ALLOWLIST = frozenset({"ImageFinding", "Finding", "Diagnosis"})

_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_HEADER_RE = re.compile(r"^//\s*(params|returns|mode)\s*:\s*(.*)$", re.M)
MODES = ("read", "write")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    dialect: str
    path: str
    text: str
    params: frozenset[str]
    columns: tuple[str, ...]
    mode: str  # "read" or "write" (the header's ``// mode:``)
    body: str  # the statement without comments, as sent to the engine

    def with_label(self, label: str) -> str:
        if label not in LABEL_ALLOWLIST:
            raise ValueError(f"label {label!r} is not in the allow-list {sorted(LABEL_ALLOWLIST)}")
        if "{label}" not in self.text:
            raise ValueError(f"statement {self.name} takes no label")
        return self.body.replace("{label}", label)


def strip_comments(text: str) -> str:
    """Remove ``//`` line comments that are not inside string literals."""
    out: list[str] = []
    i, n, quote = 0, len(text), ""
    while i < n:
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
            out.append(ch)
        elif ch == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def used_params(text: str) -> frozenset[str]:
    body = _STRING.sub("''", strip_comments(text))
    return frozenset(_PARAM_RE.findall(body))


def _parse_header(name: str, text: str) -> tuple[frozenset[str], tuple[str, ...]]:
    found = dict((k, v.strip()) for k, v in _HEADER_RE.findall(text))
    if "params" not in found or "returns" not in found:
        raise ValueError(f"{name}.cypher lacks a '// params:' or '// returns:' header line")
    if found.get("mode") not in MODES:
        raise ValueError(f"{name}.cypher lacks a '// mode: read' or '// mode: write' header line")
    params = (
        frozenset()
        if found["params"] in ("none", "")
        else frozenset(p.strip().lstrip("$") for p in found["params"].split(","))
    )
    cols = () if found["returns"] in ("none", "") else tuple(c.strip() for c in found["returns"].split(","))
    return params, cols


def _root():
    return resources.files("kgrag.cypher")


@cache
def load(name: str, dialect: str = "falkordb") -> Statement:
    """Load statement ``name`` for ``dialect`` (dialect file first, then the shared one)."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown Cypher dialect {dialect!r}; expected one of {DIALECTS}")
    root = _root()
    for rel in (f"{dialect}/{name}.cypher", f"{name}.cypher"):
        f = root.joinpath(rel)
        if f.is_file():
            text = f.read_text("utf-8")
            params, cols = _parse_header(name, text)
            mode = dict(_HEADER_RE.findall(text))["mode"].strip()
            return Statement(name, dialect, rel, text, params, cols, mode, strip_comments(text).strip())
    raise FileNotFoundError(f"no Cypher statement {name!r} for dialect {dialect!r}")


def names(dialect: str | None = None) -> list[str]:
    """Statement names visible to ``dialect`` (all files when None)."""
    root = _root()
    shared = {p.name[:-7] for p in root.iterdir() if p.name.endswith(".cypher")}
    dialects = DIALECTS if dialect is None else (dialect,)
    own: set[str] = set()
    for d in dialects:
        sub = root.joinpath(d)
        if sub.is_dir():
            own |= {p.name[:-7] for p in sub.iterdir() if p.name.endswith(".cypher")}
    return sorted(shared | own)


def all_files() -> list[tuple[str, str]]:
    """(relative path, text) of every .cypher file in the package."""
    root = _root()
    out = [(p.name, p.read_text("utf-8")) for p in root.iterdir() if p.name.endswith(".cypher")]
    for d in DIALECTS:
        sub = root.joinpath(d)
        if sub.is_dir():
            out += [(f"{d}/{p.name}", p.read_text("utf-8")) for p in sub.iterdir() if p.name.endswith(".cypher")]
    return sorted(out)
