"""One exception root for kgrag; every message says what to do next."""

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
    """Root of every error kgrag raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\n  fix: {fix}")


class ConfigError(KgragError):
    """Settings are invalid or inconsistent."""


class MissingDependencyError(KgragError):
    """An optional dependency is not installed; the message names the extra."""


class GraphStoreError(KgragError):
    """The graph engine failed or is unreachable."""


class GraphUnavailableError(GraphStoreError):
    """The graph engine could not be reached or started."""


class CypherError(GraphStoreError):
    """A Cypher statement failed; carries the statement's file name and redacted params."""

    def __init__(self, statement: str, params: dict | None, cause: BaseException | str):
        self.statement = statement
        self.params = redact(params or {})
        msg = f"Cypher statement {statement!r} failed: {cause}"
        super().__init__(msg, fix=f"params were {self.params}")


class CycleError(GraphStoreError):
    """Accepting an edge set would create a causal cycle."""


class InputError(KgragError):
    """A user-supplied record, file or argument is invalid."""

    exit_code = 2


class TestLeakError(KgragError):
    """A test-split study reached something that answers queries (evidence, graph, weights)."""

    __test__ = False  # not a pytest test class


class IndexMismatchError(KgragError):
    """A saved index/model was built with another encoder, graph version or kgrag version."""


class ModelNotFoundError(KgragError):
    """A model path or name could not be resolved offline."""
