"""``kgrag train`` and ``kgrag index build|add|info``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in d.items()) if d else "n/a"


@click.command("train")
@click.option("--name", default="default", show_default=True, help="Model name under $KGRAG_HOME/models.")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True,
              help="Maximum epochs (early stopping on val Recall@5).")
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--pooling", type=click.Choice(["gap", "lpa", "mspp"]), default="lpa", show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@home_option
@json_option
def train(name, epochs, batch_size, pooling, lr, patience, progress, home, as_json) -> None:
    """Train the image encoder + findings head (InfoNCE), fusion weights and reward model."""
    from kgrag.model.train import train as run

    rep = run(settings_for(home), name=name, epochs=epochs, batch_size=batch_size, pooling=pooling, lr=lr,
              patience=patience, progress=progress and not as_json)
    if as_json:
        emit_json(rep.to_dict())
        return
    click.echo(f"trained {rep.name!r} on {rep.n_train} train studies ({rep.epochs_run} epochs, best {rep.best_epoch}) "
               f"in {rep.seconds:.0f} s; saved to {rep.path}")
    click.echo(f"val image→report recall: {_fmt(rep.val_recall)} (chance {_fmt(rep.chance_recall)})")
    f = rep.fusion
    click.echo(f"fusion α/β/γ = {f['alpha']:.2f}/{f['beta']:.2f}/{f['gamma']:.2f}; reward pair accuracy "
               f"{rep.reward_val_pair_accuracy:.2f} (val), threshold {rep.reward_threshold}")


@click.group("index")
def index() -> None:
    """Build, update and inspect the FAISS indexes."""


@index.command("build")
@click.option("--model", "model_name", default="default", show_default=True, help="Trained model name (kgrag train --name).")
@click.option("--progress/--no-progress", default=True)
@home_option
@json_option
def build(model_name, progress, home, as_json) -> None:
    """Index train+val studies (test studies are never indexed)."""
    from kgrag.index.indexset import build_from_settings

    info = build_from_settings(settings_for(home), model_name=model_name, progress=progress and not as_json)
    if as_json:
        emit_json(info)
    else:
        click.echo(f"indexed {info['counts']} into {info['path']} (version {info['version']}, "
                   f"graph {info['graph_version']})")


@index.command("add")
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--progress/--no-progress", default=True)
@home_option
@json_option
def add(model_name, progress, home, as_json) -> None:
    """Add train+val studies ingested since the last build."""
    from kgrag.index.indexset import add_from_settings

    info = add_from_settings(settings_for(home), model_name=model_name, progress=progress and not as_json)
    if as_json:
        emit_json(info)
    else:
        click.echo(f"added {info['added']} studies; now {info['counts']}")


@index.command("info")
@home_option
@json_option
def info(home, as_json) -> None:
    """Show the index manifest: encoder, graph version, kind and count per space."""
    from kgrag.index.indexset import IndexSet

    data = IndexSet.load(settings_for(home).index_dir).info()
    if as_json:
        emit_json(data)
        return
    for k, v in data.items():
        if k == "spaces":
            for sp, m in v.items():
                click.echo(f"space {sp}: {m['kind']}, {m['count']} vectors, dim {m['dim']}, {m['metric']}")
        else:
            click.echo(f"{k}: {v}")
