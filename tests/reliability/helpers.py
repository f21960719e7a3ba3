"""Shared tools of the reliability suite: running kgrag as a user would, faults
(kill -9 at a named call, read-only and tiny filesystems) and content fingerprints."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KILLER = Path(__file__).with_name("killer.py")
#: a bound on every kgrag subprocess of the suite, so a hang fails a test instead of the run
TIMEOUT_S = 240


def env_for(home: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGRAG_") or k.startswith("KGRAG_TEST_")}
    env.update({"KGRAG_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def kgrag(home: Path | str, *args: str, env: dict[str, str] | None = None, check: bool = False,
          timeout: float = TIMEOUT_S, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m kgrag ARGS`` with KGRAG_HOME=home (optionally under ``prefix``, e.g. unshare)."""
    cmd = [*(prefix or []), sys.executable, "-m", "kgrag", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or env_for(home), timeout=timeout, cwd=ROOT)
    if check:
        assert r.returncode == 0, f"kgrag {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}"
    return r


def killed(home: Path | str, spec: str, *args: str, env: dict[str, str] | None = None,
           timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``kgrag ARGS`` under the killer (see killer.py): SIGKILL at the call ``spec`` names."""
    cmd = [sys.executable, str(KILLER), spec, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or env_for(home), timeout=timeout, cwd=ROOT)


def assert_clean_failure(r: subprocess.CompletedProcess, *needles: str) -> None:
    """A failure a user can act on: non-zero exit, 'error:' and 'fix:' lines, no traceback."""
    err = r.stderr
    assert r.returncode not in (0, -9), f"expected a failure, got rc={r.returncode}\n{err[-2000:]}"
    assert "Traceback" not in err, err[-4000:]
    assert re.search(r"(^|\r)error( E\d{3})?: ", err, re.M) and "fix:" in err, err[-2000:]
    for n in needles:
        assert n.lower() in err.lower(), f"{n!r} not in:\n{err[-2000:]}"


# -- faults -----------------------------------------------------------------------------
@functools.cache
def mount_unavailable() -> str | None:
    """Why this machine cannot mount a tmpfs or a read-only bind (None when it can)."""
    if sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs Linux with unshare(1) and mount(8)"
    probe = Path("/tmp") / f"kgrag-mount-probe-{uuid.uuid4().hex[:8]}"
    probe.mkdir()
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {probe} && mount --bind {probe} {probe} "
                            f"&& mount -o remount,bind,ro {probe}"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare/mount failed: {e}"
    finally:
        probe.rmdir()
    if r.returncode != 0:
        return f"cannot mount here (needs CAP_SYS_ADMIN): {r.stderr.strip()[-200:]}"
    return None


def readonly_prefix(*paths: Path) -> list[str]:
    """An argv prefix running the command in a private mount namespace where ``paths``
    are read-only bind mounts of themselves (the rest of the machine is untouched)."""
    binds = " && ".join(f'mount --bind "{p}" "{p}" && mount -o remount,bind,ro "{p}"' for p in paths)
    return ["unshare", "-m", "sh", "-c", f'{binds} && exec "$@"', "sh"]


@contextmanager
def tmpfs(path: Path, size: str):
    """A tiny tmpfs mounted at ``path`` (in this mount namespace) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True,
                   capture_output=True, timeout=30)
    try:
        yield path
    finally:
        from kgrag.graph.falkordb_server import EmbeddedFalkorDB

        for pid_file in path.rglob("server.lock"):
            try:
                EmbeddedFalkorDB(pid_file.parent).stop(timeout=5, force=True)
            except Exception:  # the unmount below must happen whatever the server did
                pass
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Fill the filesystem holding ``path`` with one file; bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    n = 0
    try:
        while True:
            n += os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return n


# -- processes --------------------------------------------------------------------------
def servers_on(socket: Path | str) -> list[int]:
    """pids of every redis-server whose command line names ``socket``."""
    want = f"unixsocket:{socket}".encode()
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            state = next((ln for ln in (p / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if want in cmd.replace(b"\0", b" ").split() and "Z" not in state:
            out.append(int(p.name))
    return out


# -- homes and fingerprints ---------------------------------------------------------------
def clone_home(src: Path, dst: Path) -> Path:
    """Copy a kgrag home whose server is stopped (the copy starts its own server)."""
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    EmbeddedFalkorDB(src / "graph").stop()
    runtime = {"kg.sock", "falkordb.pid", "socket_dir", "start.lock", "server.lock"}
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if n in runtime])
    return dst


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def graph_content(settings: Any) -> dict[str, Any]:
    """Counts and content hashes of everything kgrag keeps in the graph."""
    from kgrag.graph.factory import open_store

    store = open_store(settings)
    try:
        counts = store.counts()
        concepts = sorted(store.concepts(), key=lambda c: c["id"])
        edges = sorted(({k: v for k, v in e.items()} for e in store.edges()), key=lambda e: (e["src"], e["dst"]))
        studies = store.study_hashes()
        asserts = store._run("get_asserts")
    finally:
        store.close()
    return {"counts": counts, "concepts": _h(concepts), "edges": _h(edges), "studies": _h(studies),
            "asserts": _h(asserts), "n_edges": len(edges)}


def docstore_content(settings: Any) -> dict[str, Any]:
    from kgrag.docstore import DocStore

    with DocStore.from_settings(settings) as ds:
        counts = ds.counts()
        dump = ds.dump()
    return {"counts": counts, "hash": _h(dump)}


def index_content(settings: Any) -> dict[str, Any]:
    """Ids and vectors (rounded to 1e-5) of every index space, and the index version."""
    import numpy as np

    from kgrag.index.indexset import IndexSet

    idx = IndexSet.load(settings.index_dir)
    out: dict[str, Any] = {"version": idx.version, "graph_version": idx.graph_version}
    for sp, space in idx.spaces.items():
        out[sp] = {"count": len(space.ids), "ids": _h(space.ids),
                   "vectors": hashlib.sha256(np.round(space.vectors, 5).tobytes()).hexdigest()}
    return out
