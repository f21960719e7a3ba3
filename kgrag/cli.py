"""The ``kgrag`` command line: a thin, lazily-loaded click group.

Each subcommand lives in ``kgrag.commands.<module>`` and is imported only when
invoked, so ``kgrag --help`` loads no model, torch, driver or server.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from kgrag import __version__

#: command name -> ("module:attribute", one-line help shown by ``kgrag --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("kgrag.commands.doctor:doctor", "Check dependencies, graph engine, home, models."),
    "db": ("kgrag.commands.db:db", "Start, stop and inspect the graph database."),
    "synth": ("kgrag.commands.synth:synth", "Generate a synthetic phantom corpus."),
    "fetch": ("kgrag.commands.ingest:fetch", "Fetch a public corpus (iu-xray) and write a manifest."),
    "ingest": ("kgrag.commands.ingest:ingest", "Ingest a corpus into the docstore and graph."),
    "extract": ("kgrag.commands.ingest:extract", "Extract concept mentions from report text on stdin."),
    "kg": ("kgrag.commands.kg:kg", "Build and inspect the causal knowledge graph."),
    "curate": ("kgrag.commands.kg:curate", "Review causal edges: export, import, set status."),
    "audit": ("kgrag.commands.kg:audit", "Audit the causal graph (cycles, leakage, drift...)."),
    "train": ("kgrag.commands.retrieval:train", "Train image encoder, findings head, fusion, reward."),
    "index": ("kgrag.commands.retrieval:index", "Build or update FAISS indexes."),
    "query": ("kgrag.commands.query:query", "Retrieve, rerank and answer a query."),
    "finetune": ("kgrag.commands.finetune:finetune", "LoRA-tune a local generator on train-split prompts."),
    "eval": ("kgrag.commands.eval:eval_", "Evaluate on a manifest's test split: metrics, ablations, report."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        target, _ = spec
        mod_name, attr = target.split(":")
        return getattr(importlib.import_module(mod_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)



@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kgrag")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """kgrag: causal-knowledge-graph-guided retrieval for medical images and reports."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # the Neo4j driver logs a failed connection at ERROR on its own loggers ("neo4j.pool");
    # kgrag reports that failure itself, with a fix, so the driver's lines show only with -v
    logging.getLogger("neo4j").setLevel(logging.CRITICAL if verbose == 0 else level)


def _report(e) -> None:
    click.echo(f"error {e.code}: {e.message}", err=True)
    if e.fix:
        click.echo(f"  fix: {e.fix}", err=True)
    sys.exit(e.exit_code)


def main(argv: list[str] | None = None) -> None:
    import os
    import sqlite3

    from kgrag.errors import KgragError
    from kgrag.paths import PRIVATE_UMASK, is_storage_error, storage_error

    os.umask(PRIVATE_UMASK)  # the home holds health data: files 0600, directories 0700
    try:
        cli.main(args=argv, prog_name="kgrag", standalone_mode=False)
    except KgragError as e:
        _report(e)
    except (OSError, sqlite3.Error) as e:
        # a write the filesystem refused (full, read-only, not ours) that no layer named
        if not is_storage_error(e):
            raise
        path = getattr(e, "filename", None) or os.environ.get("KGRAG_HOME") or "the kgrag home"
        _report(storage_error(e, path, "write"))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
