"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def home_option(f: F) -> F:
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        envvar="KGRAG_HOME",
        help="kgrag home (docstore, graph, indexes, models). Default: $KGRAG_HOME or ./.kgrag",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(
        f
    )


def settings_for(home: str | None, **overrides: Any):
    from kgrag.config import load_settings

    return load_settings(home, **overrides)


def _default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, set | frozenset):
        return sorted(o)
    return str(o)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()
