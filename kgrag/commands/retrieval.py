"""``kgrag train`` and ``kgrag index``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


@click.command("train")
@click.option("--name", default="default", show_default=True, help="Model name under $KGRAG_HOME/models.")
@click.option("--epochs", type=int, default=12, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--pooling", type=click.Choice(["gap", "lpa", "mspp"]), default="lpa", show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@home_option
@json_option
def train(name, epochs, batch_size, pooling, lr, home, as_json) -> None:
    """Train the image encoder and findings head (InfoNCE), fusion weights and reward model."""
    from kgrag.retrieval.train import train as run

    rep = run(settings_for(home), name=name, epochs=epochs, batch_size=batch_size, pooling=pooling, lr=lr)
    if as_json:
        emit_json(rep.to_dict())
        return
    click.echo(f"trained {rep.name} on {rep.n_train} studies ({rep.epochs_run} epochs, best {rep.best_epoch}) in {rep.seconds:.0f}s")
    click.echo(f"val image→report recall {rep.val_recall} (chance {rep.chance_recall})")
    click.echo(f"fusion α/β/γ = {rep.fusion['alpha']:.2f}/{rep.fusion['beta']:.2f}/{rep.fusion['gamma']:.2f}; "
               f"reward pair accuracy {rep.reward_pair_accuracy:.2f}; saved to {rep.path}")


@click.group("index")
def index() -> None:
    """Build, update and inspect the FAISS indexes."""


@index.command("build")
@click.option("--model", "model_name", default="default", show_default=True)
@home_option
@json_option
def build(model_name, home, as_json) -> None:
    """Index train+val studies (test studies are never indexed)."""
    from kgrag.retrieval.index import build_from_settings

    info = build_from_settings(settings_for(home), model_name=model_name)
    if as_json:
        emit_json(info)
    else:
        click.echo(f"indexed {info['counts']} into {info['path']} (graph {info['graph_version']})")


@index.command("add")
@click.option("--model", "model_name", default="default", show_default=True)
@home_option
@json_option
def add(model_name, home, as_json) -> None:
    """Add studies ingested since the last build."""
    from kgrag.retrieval.index import add_from_settings

    info = add_from_settings(settings_for(home), model_name=model_name)
    if as_json:
        emit_json(info)
    else:
        click.echo(f"added {info['added']} studies; now {info['counts']}")


@index.command("info")
@home_option
@json_option
def info(home, as_json) -> None:
    from kgrag.retrieval.index import IndexSet

    s = settings_for(home)
    data = IndexSet.load(s.index_dir).info()
    if as_json:
        emit_json(data)
    else:
        for k, v in data.items():
            click.echo(f"{k}: {v}")
