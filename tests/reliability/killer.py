"""Run ``kgrag ARGS`` and SIGKILL at a named call, to test resumption at a precise point.

    python killer.py SPEC kgrag-args...

SPEC is ``module:Class.method:when:N[:first_arg][:target]``:

- ``when`` is ``before`` or ``after`` the N-th call (counting only calls whose first
  argument equals ``first_arg`` when one is given);
- ``target`` is ``self`` (default: this kgrag process dies) or ``server`` (the
  embedded FalkorDB server of $KGRAG_HOME is killed and the command goes on).

``KGRAG_TEST_SET="module:NAME=int,..."`` sets module constants first (e.g. a smaller
ingest batch, so a kill lands between batches).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def _kill_server() -> None:
    from kgrag.config import load_settings
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    srv = EmbeddedFalkorDB.from_settings(load_settings())
    pid = srv.pid()
    assert pid is not None, "no embedded server to kill"
    os.kill(pid, signal.SIGKILL)
    import time

    while srv.lock_held():  # wait until it is really gone
        time.sleep(0.01)
    sys.stderr.write(f"killer: SIGKILL sent to the FalkorDB server (pid {pid})\n")


def install(spec: str) -> None:
    parts = spec.split(":")
    module, attr, when, n = parts[0], parts[1], parts[2], int(parts[3])
    first = parts[4] if len(parts) > 4 and parts[4] else None
    target = parts[5] if len(parts) > 5 else "self"
    owner_name, meth = attr.rsplit(".", 1) if "." in attr else (None, attr)
    mod = importlib.import_module(module)
    owner = getattr(mod, owner_name) if owner_name else mod
    real = getattr(owner, meth)
    seen = [0]

    def hit() -> None:
        if target == "server":
            _kill_server()
        else:
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def wrapper(*args, **kwargs):
        # a method sees self first; the filter applies to the first argument after it
        rest = args[1:] if owner_name else args
        counts = first is None or (rest and str(rest[0]) == first)
        if counts:
            seen[0] += 1
        if counts and seen[0] == n and when == "before":
            hit()
        out = real(*args, **kwargs)
        if counts and seen[0] == n and when == "after":
            hit()
        return out

    setattr(owner, meth, wrapper)


def set_constants(spec: str) -> None:
    for item in filter(None, spec.split(",")):
        target, value = item.split("=")
        module, name = target.split(":")
        setattr(importlib.import_module(module), name, int(value))


if __name__ == "__main__":
    set_constants(os.environ.get("KGRAG_TEST_SET", ""))
    install(sys.argv[1])
    from kgrag.cli import main

    main(sys.argv[2:])
