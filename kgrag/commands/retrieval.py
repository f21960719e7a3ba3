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
@click.option("--unmentioned", type=click.Choice(["absent", "masked"]), default=None,
              help="Findings-head label of an unmentioned concept [default: models.unmentioned_as].")
@click.option("--min-findings-auc", type=click.FloatRange(0, 1), default=None,
              help="Leave a head concept out of V_I below this val AUC [default: models.min_findings_auc].")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@home_option
@json_option
def train(name, epochs, batch_size, pooling, lr, patience, unmentioned, min_findings_auc, progress, home,
          as_json) -> None:
    """Train the encoders + calibrated findings head (V_I), fusion weights per query form and reward model.

    A corpus without images trains the text side (projection, fusion, reward)."""
    from kgrag.model.train import train as run

    rep = run(settings_for(home), name=name, epochs=epochs, batch_size=batch_size, pooling=pooling, lr=lr,
              patience=patience, progress=progress and not as_json, unmentioned=unmentioned,
              min_findings_auc=min_findings_auc)
    if as_json:
        emit_json(rep.to_dict())
        return
    click.echo(f"trained {rep.name!r} ({'+'.join(rep.modalities)}) on {rep.n_train} train studies "
               f"({rep.epochs_run} epochs, best {rep.best_epoch}) in {rep.seconds:.0f} s; saved to {rep.path}")
    if "image" in rep.modalities:
        click.echo(f"val image→report recall: {_fmt(rep.val_recall)} (chance {_fmt(rep.chance_recall)})")
        click.echo(f"findings head (val; unmentioned = {rep.unmentioned}): concept, AUC, ECE raw → calibrated")
        for c, st in rep.findings.items():
            auc = "n/a" if st.get("auc") is None else f"{st['auc']:.3f}"
            ece = "" if st.get("ece_raw") is None else f"  ECE {st['ece_raw']:.3f} → {st['ece_calibrated']:.3f}"
            click.echo(f"  {'V_I ' if st.get('in_vi') else 'out '}{c:28s} AUC {auc}{ece}"
                       + (f"  ({st['excluded']})" if st.get("excluded") else ""))
    else:
        click.echo(f"text only: val findings→report recall@10 {_fmt(rep.val_recall)} "
                   f"(frozen encoder alone: {rep.text_baseline_recall})")
    click.echo("fusion per query form: α/β/γ, val recall@10 (joint weights; own-report fit)")
    for form, r in rep.fusion_forms.items():
        if "recall@10" not in r:
            continue
        w = "/".join(f"{x:.2f}" for x in r["weights_effective"])
        extra = f"; {r['recall@10_own_report_fit']:.3f}" if "recall@10_own_report_fit" in r else ""
        click.echo(f"  {form:18s} {w}  recall@10 {r['recall@10']:.3f} ({r['recall@10_joint']:.3f}{extra}; "
                   f"chance {r['recall@10_chance']:.3f})")
    click.echo(f"reward pair accuracy {rep.reward_val_pair_accuracy:.2f} (val); filter per query kind "
               "(val stage-1 candidates):")
    for kind, f in rep.reward_fit.items():
        if "threshold" in f:
            click.echo(f"  {kind:9s} τ {f['threshold']:.3f} (J {f['youden_j']:.2f}) keeps {f['kept_share']:.0%}; "
                       f"recall@10 {f['recall@10_without']:.3f} → {f['recall@10_with']:.3f}")
        else:
            click.echo(f"  {kind:9s} off: {f.get('off')}")


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
