"""GraphStore on Neo4j (production; curation in Neo4j Browser) via the official driver."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from kgrag import cypher
from kgrag.config import redact_uri
from kgrag.deps import require
from kgrag.errors import CypherError, GraphUnavailableError
from kgrag.graph.cypher_store import CypherGraphStore
from kgrag.graph.rows import plain as _plain

log = logging.getLogger(__name__)

class Neo4jStore(CypherGraphStore):
    backend = "neo4j"
    dialect = "neo4j"

    def __init__(self, driver: Any, *, database: str | None = None, uri: str = "",
                 batch_size: int = 1000, default_leak: float = 0.01) -> None:
        """``driver`` is a ``neo4j.Driver`` (built by :meth:`from_settings` or a test)."""
        super().__init__(batch_size=batch_size, default_leak=default_leak)
        self._driver = driver
        self.database = database
        self.uri = redact_uri(uri)  # the one kgrag shows: userinfo masked
        self._secrets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> Neo4jStore:
        """The only place a Neo4j driver is created.  Fails within the connect timeout."""
        neo4j = require("neo4j")
        cfg = settings.neo4j
        try:
            driver = neo4j.GraphDatabase.driver(
                cfg.uri,
                auth=(cfg.user, cfg.password.get_secret_value()),
                connection_timeout=cfg.connect_timeout_s,
                connection_acquisition_timeout=cfg.connect_timeout_s,
                max_transaction_retry_time=cfg.max_retry_time_s,
            )
            driver.verify_connectivity()
        except Exception as e:
            raise GraphUnavailableError(
                f"cannot reach Neo4j at {redact_uri(cfg.uri)}: {type(e).__name__}: "
                f"{scrub(str(e), cfg.uri, cfg.password.get_secret_value())}",
                fix="start Neo4j (docker compose -f docker/compose.yml up neo4j) or set "
                "KGRAG_NEO4J__URI / KGRAG_NEO4J__USER / KGRAG_NEO4J__PASSWORD; "
                "or use the embedded default with KGRAG_GRAPH__BACKEND=falkordb",
            ) from e
        store = cls(driver, database=cfg.database, uri=cfg.uri, batch_size=settings.graph.batch_size,
                    default_leak=settings.kg.default_leak)
        store._secrets = (cfg.uri, cfg.password.get_secret_value())
        return store

    def _execute(self, name: str, text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run one catalogue statement, routed to a writer or a reader by its ``// mode:`` header."""
        neo4j = require("neo4j")
        write = cypher.load(name.rsplit("/", 1)[-1], self.dialect).mode == "write"
        routing = neo4j.RoutingControl.WRITE if write else neo4j.RoutingControl.READ
        with self._errors(name, params):
            records, _, _ = self._driver.execute_query(
                text, parameters_=dict(params), database_=self.database, routing_=routing
            )
        return [{k: _plain(v) for k, v in r.items()} for r in records]

    def _execute_autocommit(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement in an auto-commit transaction (``CALL { … } IN TRANSACTIONS`` needs one)."""
        stmt = cypher.load(name, self.dialect)
        with self._errors(name, params or {}), self._driver.session(database=self.database) as s:
            s.run(stmt.body, dict(params or {})).consume()

    @contextlib.contextmanager
    def _errors(self, name: str, params: Mapping[str, Any]) -> Iterator[None]:
        neo4j = require("neo4j")
        try:
            yield
        except neo4j.exceptions.ServiceUnavailable as e:
            raise GraphUnavailableError(f"Neo4j at {self.uri} became unavailable: {scrub(str(e), *self._secrets)}",
                                        fix="check the Neo4j server and network") from e
        except GraphUnavailableError:
            raise
        except Exception as e:
            raise CypherError(name, dict(params), scrub(str(e), *self._secrets)) from e

    def ensure_schema(self) -> None:
        self._run("create_schema")
        self._run("create_study_schema")

    def drop(self) -> None:
        """Delete kgrag's nodes and relationships (only its labels), 1,000 nodes per transaction."""
        self._execute_autocommit("delete_all")

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": "neo4j", "uri": self.uri, "database": self.database}
        try:
            self._driver.verify_connectivity()
            info["running"] = True
            info["server"] = str(self._driver.get_server_info().agent)
            info["counts"] = self.counts()
        except Exception as e:  # status is diagnostic
            info["running"] = False
            info["error"] = f"{type(e).__name__}: {scrub(str(e), *self._secrets)}"
        return info

    def close(self) -> None:
        self._driver.close()


def scrub(text: str, uri: str = "", password: str = "") -> str:
    """``text`` with the URI's userinfo and the password masked (driver messages may quote them)."""
    from urllib.parse import unquote, urlsplit

    secrets = [password]
    if uri:
        text = text.replace(uri, redact_uri(uri))
        try:
            parts = urlsplit(uri)
            secrets += [parts.password or "", unquote(parts.password or "")]
        except ValueError:
            pass
    text = redact_uri(text)
    for s in sorted({x for x in secrets if x and len(x) >= 3}, key=len, reverse=True):
        text = text.replace(s, "***")
    return text
