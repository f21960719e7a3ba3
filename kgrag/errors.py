"""One exception root for kgrag; every message says what to do next.

Every class has a stable code (``E101``…), printed by the CLI (``error E301: …``)
and listed in ``docs/errors.md``, which :func:`errors_markdown` generates (run
``python -m kgrag.errors > docs/errors.md``; a test keeps the two equal).  Codes are
never reused: a class that goes away keeps its number retired.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|api[_-]?key|auth)", re.I)


def redact(value: Any, key: str | None = None) -> Any:
    """Return ``value`` with secrets masked (by key name, recursively)."""
    if key is not None and _SECRET_KEYS.search(key):
        return "***"
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + f"...(+{len(value) - 200} chars)"
    return value


class KgragError(Exception):
    """Root of every error kgrag raises on purpose; raise a subclass, never this class."""

    code = "E100"
    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\n  fix: {fix}")


class ConfigError(KgragError):
    """Settings are invalid or inconsistent."""

    code = "E101"


class MissingDependencyError(KgragError):
    """An optional dependency is not installed; the message names the extra."""

    code = "E102"


class GraphStoreError(KgragError):
    """The graph engine failed or refused an operation."""

    code = "E200"


class GraphUnavailableError(GraphStoreError):
    """The graph engine could not be reached or started."""

    code = "E201"


class CypherError(GraphStoreError):
    """A Cypher statement failed; carries the statement's file name and redacted params."""

    code = "E202"

    def __init__(self, statement: str, params: dict | None, cause: BaseException | str):
        self.statement = statement
        self.params = redact(params or {})
        msg = f"Cypher statement {statement!r} failed: {cause}"
        super().__init__(msg, fix=f"params were {self.params}")


class CycleError(GraphStoreError):
    """Accepting an edge set would create a causal cycle."""

    code = "E203"


class InputError(KgragError):
    """A user-supplied record, file or argument is invalid."""

    code = "E300"
    exit_code = 2


class RecordError(InputError):
    """One input record is invalid; the rest of its batch still lands."""

    code = "E301"

    def __init__(self, message: str, fix: str | None = None, *, record: str | None = None):
        self.record = record
        super().__init__(message if record is None else f"{record}: {message}", fix=fix)


class ArtifactMismatchError(KgragError):
    """A saved artifact (index, model) does not match what it is loaded with."""

    code = "E400"


class IndexMismatchError(ArtifactMismatchError):
    """A saved index was built with another encoder, graph version or kgrag version, or is damaged."""

    code = "E401"


class ModelMismatchError(ArtifactMismatchError):
    """A saved model's weights, format or manifest disagree."""

    code = "E402"


class ModelNotFoundError(KgragError):
    """A model path or name could not be resolved offline."""

    code = "E403"


class TestLeakError(KgragError):
    """A test-split study reached something that answers queries (evidence, graph, weights)."""

    __test__ = False  # not a pytest test class
    code = "E501"


class FetchError(KgragError):
    """A dataset could not be fetched or unpacked."""

    code = "E502"


class ServiceError(KgragError):
    """An external service kgrag was pointed at (an LLM server, an HTTP generator) failed."""

    code = "E503"


class StorageError(KgragError):
    """A write under the kgrag home failed: the disk is full, or the path is read-only or not ours."""

    code = "E504"


def error_classes() -> list[type[KgragError]]:
    """Every error class, root first, in code order."""
    out: list[type[KgragError]] = []
    todo: list[type[KgragError]] = [KgragError]
    while todo:
        c = todo.pop()
        out.append(c)
        todo.extend(c.__subclasses__())
    return sorted({c for c in out if c.__module__ == __name__}, key=lambda c: c.code)


def errors_markdown() -> str:
    """The ``docs/errors.md`` table, generated from the classes above."""
    rows = ["# Errors", "",
            "Every error kgrag raises on purpose has a stable code; the CLI prints it as",
            "`error E301: <message>` with a `fix:` line, and exits 2 for input errors, 1 otherwise.",
            "This file is generated: `python -m kgrag.errors > docs/errors.md`.", "",
            "| code | error | parent | exit | meaning |", "|---|---|---|---|---|"]
    for c in error_classes():
        parent = c.__mro__[1].__name__ if c is not KgragError else "Exception"
        doc = " ".join((c.__doc__ or "").split())
        rows.append(f"| {c.code} | `{c.__name__}` | `{parent}` | {c.exit_code} | {doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(errors_markdown(), end="")
