"""GraphStore on FalkorDB: the embedded default (or an external server by URL)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kgrag.config import redact_uri
from kgrag.errors import CypherError, GraphUnavailableError
from kgrag.graph.cypher_store import CypherGraphStore
from kgrag.graph.falkordb_server import EmbeddedFalkorDB, Health, reply_state, unhealthy_error
from kgrag.graph.rows import plain as _plain

log = logging.getLogger(__name__)


class FalkorDBStore(CypherGraphStore):
    backend = "falkordb"
    dialect = "falkordb"

    def __init__(self, db: Any, graph_name: str, *, server: EmbeddedFalkorDB | None = None,
                 batch_size: int = 1000, default_leak: float = 0.01) -> None:
        """``db`` is a connected ``falkordb.FalkorDB`` client (built by the factories below)."""
        super().__init__(batch_size=batch_size, default_leak=default_leak)
        self._db = db
        self.graph_name = graph_name
        self._graph = db.select_graph(graph_name)
        self._server = server

    # -- factories: the only places a client is created ----------------------------
    @classmethod
    def from_server(cls, server: EmbeddedFalkorDB, graph_name: str, **kw: Any) -> FalkorDBStore:
        server.ensure_running()
        return cls(server._client(timeout=120.0), graph_name, server=server, **kw)

    @classmethod
    def from_settings(cls, settings: Any) -> FalkorDBStore:
        kw = {"batch_size": settings.graph.batch_size, "default_leak": settings.kg.default_leak}
        url = settings.falkordb.url
        if url:
            from kgrag.deps import require

            falkordb = require("falkordb")
            pw = settings.falkordb.password.get_secret_value() if settings.falkordb.password else None
            try:
                if url.startswith("unix://"):
                    db = falkordb.FalkorDB(unix_socket_path=url[len("unix://"):], password=pw, socket_timeout=120)
                else:
                    db = falkordb.FalkorDB.from_url(url) if pw is None else falkordb.FalkorDB.from_url(url, password=pw)
                db.connection.ping()
            except Exception as e:
                raise GraphUnavailableError(
                    f"cannot reach FalkorDB at {redact_uri(url)}: {type(e).__name__}: {_scrub(str(e), url, pw)}",
                    fix="check KGRAG_FALKORDB__URL / KGRAG_FALKORDB__PASSWORD, or unset the URL to use the embedded server",
                ) from e
            return cls(db, settings.graph.name, **kw)
        server = EmbeddedFalkorDB.from_settings(settings)
        return cls.from_server(server, settings.graph.name, **kw)

    def status(self) -> dict[str, Any]:
        """The embedded server's state (pid, socket, memory, graph sizes), or for a
        FalkorDB reached by URL its reachability and this graph's counts."""
        if self._server is not None:
            return self._server.status()
        info: dict[str, Any] = {"backend": "falkordb", "embedded": False, "graph": self.graph_name}
        try:
            info["counts"] = self.counts()
            info["running"] = True
        except Exception as e:  # status is diagnostic; report rather than fail
            info["running"] = False
            info["error"] = f"{type(e).__name__}: {redact_uri(str(e))}"
        return info

    # -- execution ---------------------------------------------------------------------
    def _unhealthy(self, e: BaseException) -> GraphUnavailableError | None:
        """A MISCONF (disk full) or OOM reply: the server is alive but cannot write."""
        state = reply_state(str(e))
        if state not in ("disk_full", "oom"):
            return None
        where = self._server.graph_dir if self._server is not None else "the FalkorDB server's data directory"
        return unhealthy_error(Health(state, str(e)), where)

    def _execute(self, name: str, text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            res = self._graph.query(text, dict(params))
        except Exception as e:
            bad = self._unhealthy(e)
            if bad is not None:
                raise bad from e
            if self._server is not None and not self._server.running():
                # the embedded server died (e.g. killed): restart it once and retry
                log.warning("embedded FalkorDB is not running; restarting it")
                self._server.start()
                self._db = self._server._client(timeout=120.0)
                self._graph = self._db.select_graph(self.graph_name)
                try:
                    res = self._graph.query(text, dict(params))
                except Exception as e2:
                    raise CypherError(name, dict(params), e2) from e2
            else:
                raise CypherError(name, dict(params), e) from e
        return _rows(res)

    def _send(self, calls, executor=None):
        """Write every statement to one connection now (Redis pipelining); each reader
        takes its reply off the socket in order, so the engine computes while the
        caller goes on.  A failed send falls back to plain calls (which restart a dead
        embedded server); ``executor`` is not needed."""
        try:
            return _PipelinedReplies(self, calls)
        except Exception as e:  # connection-level trouble: the plain path recovers or names it
            log.debug("pipelined send failed (%s: %s); running the statements one by one", type(e).__name__, e)
            return super()._send(calls, None)

    def _check_map_keys(self, keys) -> None:
        bad = sorted(k for k in keys if "`" in k)
        if bad:
            from kgrag.errors import InputError

            raise InputError(f"concept ids {bad[:5]} contain a backtick, which FalkorDB cannot take as a map key",
                             fix="rename the concepts (ids are snake_case), or use the Neo4j backend")

    def compact(self) -> bool:
        """Rewrite the embedded server's AOF into a snapshot when its statement log grew."""
        return self._server.compact() if self._server is not None else False

    def ensure_schema(self) -> None:
        try:
            existing = {(tuple(r[0]) if isinstance(r[0], list) else r[0]) for r in self._graph.list_indices().result_set}
        except Exception:
            existing = set()
        try:  # a refused duplicate GRAPH.CONSTRAINT is still logged into the AOF: send only missing ones
            constrained = {r["label"] for r in self._run("get_constraints")
                           if r.get("type") == "UNIQUE" and list(r.get("properties") or []) == ["id"]}
        except CypherError:
            constrained = set()
        for stmt, label in (("create_schema", "Concept"), ("create_study_schema", "Study")):
            if label in existing:
                continue
            try:
                self._run(stmt)
            except CypherError as e:
                if "already indexed" not in str(e).lower():
                    raise
        created = False
        for label in ("Concept", "Study"):
            if label in constrained:
                continue
            try:
                self._graph.create_node_unique_constraint(label, "id")
                created = True
            except Exception as e:  # an existing constraint is fine
                if "already exists" not in str(e).lower() and "constraint" not in str(e).lower():
                    raise CypherError(f"GRAPH.CONSTRAINT CREATE UNIQUE {label}(id)", None, e) from e
        if created and self._server is not None:
            # FalkorDB 4.16 logs each GRAPH.CONSTRAINT CREATE twice in the AOF, so every
            # later start replays a refused duplicate ("Constraint already exists",
            # logged CRITICAL); a rewrite of the (still small) AOF drops the pair
            self._server.compact(0, wait=5.0)

    def drop(self) -> None:
        try:
            self._graph.delete()
        except Exception as e:
            if "empty key" in str(e).lower() or "invalid graph" in str(e).lower() or "not exist" in str(e).lower():
                return
            raise CypherError("GRAPH.DELETE", None, e) from e

    def close(self) -> None:
        try:
            self._db.connection.close()
        except Exception:  # closing a dead connection is not an error worth raising
            pass


def _scrub(text: str, url: str, password: str | None) -> str:
    """``text`` without the URL's userinfo or the password (driver messages may quote them)."""
    text = text.replace(url, redact_uri(url))
    return text.replace(password, "***") if password else text


def _rows(res: Any) -> list[dict[str, Any]]:
    cols = [h[1] if isinstance(h, list | tuple) else h for h in (res.header or [])]
    return [dict(zip(cols, map(_plain, row), strict=False)) for row in res.result_set or []]


class _PipelinedReplies(list):
    """Readers of read-only statements written to one pooled connection at once.

    Reader i reads the replies up to i off the socket (Redis answers a connection's
    commands in order).  The connection goes back to the pool after the last reply;
    :meth:`close` disconnects it instead when replies are left unread, so no later
    command can read a stale reply.  After a failed read the remaining statements run
    one by one through the store (with its restart-on-death handling).
    """

    def __init__(self, store: FalkorDBStore, calls) -> None:
        super().__init__()
        self._store, self._calls = store, list(calls)
        self._pool = store._db.connection.connection_pool
        self._conn = self._pool.get_connection()
        try:
            build = store._graph._build_params_header
            self._conn.send_packed_command(self._conn.pack_commands(
                [("GRAPH.RO_QUERY", store.graph_name, build(dict(params)) + text, "--compact")
                 for _, text, params in self._calls]))
        except Exception:
            self._drop()
            raise
        self._got: list[Any] = []
        self._broken = False
        self.extend(self._reader(i) for i in range(len(self._calls)))

    def _reader(self, i: int):
        return lambda: self._read(i)

    def _read(self, i: int) -> list[dict[str, Any]]:
        from falkordb.query_result import QueryResult

        name, text, params = self._calls[i]
        while len(self._got) <= i and not self._broken:
            try:
                self._got.append(("ok", self._conn.read_response()))
            except Exception as e:
                self._got.append(("error", e))
                self._broken = True
                self._drop()
            if len(self._got) == len(self._calls):
                self.close()
        if i >= len(self._got):  # the connection broke on an earlier reply
            return self._store._execute(name, text, params)
        kind, reply = self._got[i]
        if kind == "error":
            if _is_connection_error(reply):
                return self._store._execute(name, text, params)
            raise CypherError(name, dict(params), reply) from reply
        try:
            return _rows(QueryResult(self._store._graph, reply))
        except Exception as e:
            raise CypherError(name, dict(params), e) from e

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._pool.release(self._conn)
            self._conn = None

    def close(self) -> None:
        if self._conn is None:
            return
        if len(self._got) < len(self._calls):
            self._drop()  # replies still in flight: never hand this connection to anyone else
        else:
            self._pool.release(self._conn)
            self._conn = None


def _is_connection_error(e: BaseException) -> bool:
    import redis

    return isinstance(e, redis.ConnectionError | redis.TimeoutError | OSError)
