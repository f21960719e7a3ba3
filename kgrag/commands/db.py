"""``kgrag db start|stop|status``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


@click.group("db")
def db() -> None:
    """Start, stop and inspect the graph database (embedded FalkorDB or Neo4j)."""


def _embedded(settings):
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    return EmbeddedFalkorDB.from_settings(settings)


def _uses_embedded(settings) -> bool:
    return settings.graph.backend == "falkordb" and not settings.falkordb.url


@db.command("start")
@home_option
@json_option
def start(home: str | None, as_json: bool) -> None:
    """Start the embedded FalkorDB server (a no-op when it is running)."""
    settings = settings_for(home)
    if not _uses_embedded(settings):
        raise click.ClickException(f"the {settings.graph.backend} backend is external; kgrag does not start it")
    srv = _embedded(settings)
    was_running = srv.running()
    st = srv.start()
    from kgrag.graph.factory import open_store

    open_store(settings).close()  # create the schema
    st["already_running"] = was_running
    if as_json:
        emit_json(st)
    else:
        click.echo(f"FalkorDB {'already running' if was_running else 'started'}: pid {st['pid']}, socket {st['socket']}")


@db.command("stop")
@click.option("--force", is_flag=True,
              help="Stop a server that cannot save (disk full) even so; its last unsaved writes are lost.")
@home_option
@json_option
def stop(force: bool, home: str | None, as_json: bool) -> None:
    """Stop the embedded FalkorDB server."""
    settings = settings_for(home)
    if not _uses_embedded(settings):
        raise click.ClickException(f"the {settings.graph.backend} backend is external; kgrag does not stop it")
    stopped = _embedded(settings).stop(force=force)
    if as_json:
        emit_json({"stopped": stopped})
    else:
        click.echo("FalkorDB stopped" if stopped else "FalkorDB was not running")


@db.command("status")
@home_option
@json_option
def status(home: str | None, as_json: bool) -> None:
    """Server state: pid, socket, graph sizes, memory (or Neo4j connectivity)."""
    settings = settings_for(home)
    if settings.graph.backend == "neo4j":
        from kgrag.errors import GraphUnavailableError
        from kgrag.graph.neo4j_store import Neo4jStore

        try:
            store = Neo4jStore.from_settings(settings)
            st = store.status()
            store.close()
        except GraphUnavailableError as e:
            from kgrag.config import redact_uri

            st = {"backend": "neo4j", "uri": redact_uri(settings.neo4j.uri), "running": False, "error": e.message}
    elif settings.falkordb.url:
        from kgrag.graph.falkordb_store import FalkorDBStore

        store = FalkorDBStore.from_settings(settings)
        st = store.status()
        store.close()
    else:
        st = _embedded(settings).status()
    if as_json:
        emit_json(st)
        return
    if not st.get("running"):
        click.echo(f"{st['backend']}: not running" + (f" ({st['error']})" if st.get("error") else ""))
        if st.get("fix"):
            click.echo(f"  fix: {st['fix']}")
        elif st.get("backend") == "falkordb":
            click.echo("  start it with: kgrag db start")
        return
    for k, v in st.items():
        if k == "graphs":
            for g, c in v.items():
                click.echo(f"graph {g}: {c['nodes']} nodes, {c['edges']} edges")
        else:
            click.echo(f"{k}: {v}")
