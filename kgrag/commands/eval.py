"""``kgrag eval``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for

TASKS = ("retrieval", "vqa", "report", "diagnosis", "extraction")


def _split(values: tuple[str, ...]) -> list[str]:
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def _summary(res: dict) -> None:
    from kgrag.eval.report import fmt_ci

    for task, tr in res["results"].items():
        if "skipped" in tr:
            click.echo(f"{task}: skipped ({tr['skipped']})")
            continue
        click.echo(f"{task} ({tr['n_queries']} queries):")
        for name, vr in tr["variants"].items():
            click.echo(f"  {name:24s} " + "  ".join(f"{m} {fmt_ci(vr['ci'].get(m))}" for m in tr["primary"][:3]))
        for p in tr["paired"]:
            if p["metric"] in tr["primary"][:3]:
                click.echo(f"  {p['a']} − {p['b']} {p['metric']}: {p['difference']:+.3f} (p = {p['p_value']:.3g})")
    out = res.get("outputs", {})
    click.echo(f"results: {out.get('results_json')}\nreport:  {out.get('html')}")


@click.command("eval")
@click.argument("manifest", type=click.Path(exists=True))
@click.argument("more_sweeps", nargs=-1, metavar="[AXIS=V,...]...")
@click.option("--task", "tasks", multiple=True, required=True,
              help=f"One or more of {', '.join(TASKS)} (repeat or comma-separate).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output directory (default $KGRAG_HOME/runs/eval/<timestamp>).")
@click.option("--sweep", "sweeps", multiple=True,
              help="One-factor sweeps, e.g. --sweep alpha=0,0.25,0.5,0.75,1 tau=0.5,0.7,0.9 k=5,10,20.")
@click.option("--rerank", "reranks", multiple=True, help="Also evaluate these reranks: causal, pagerank, none.")
@click.option("--graph", "graph", type=click.Choice(["learned", "random"]), default="learned", show_default=True,
              help="random: add a random DAG with the learned graph's edge count and strengths.")
@click.option("--noise", "noise", multiple=True, help="Inject this share of irrelevant studies into the top-K (e.g. 0.5).")
@click.option("--shift", is_flag=True, help="Report in- and out-of-distribution test studies apart (kgrag synth --shift).")
@click.option("--query-from", type=click.Choice(["auto", "image", "findings"]), default="auto", show_default=True,
              help="Query with the study's images, or its FINDINGS text (impression hidden); auto: images if any.")
@click.option("--concepts", type=click.Choice(["diagnoses", "all"]), default="diagnoses", show_default=True,
              help="Diagnosis task: score the diagnoses, or every labelled concept.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate a seeded sample of N test studies.")
@click.option("--seed", type=int, default=13, show_default=True, help="Seed of resampling, noise, random graph, --limit.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--permutations", "n_perm", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--no-meteor", is_flag=True, help="Skip METEOR (the Java step) in the report task.")
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--keep-scratch", is_flag=True, help="Keep the scratch homes of the graph ablations.")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@home_option
@json_option
def eval_(manifest, more_sweeps, tasks, out_dir, sweeps, reranks, graph, noise, shift, query_from, concepts, limit, seed,
          n_boot, n_perm, no_meteor, model_name, keep_scratch, progress, home, as_json) -> None:
    """Evaluate the home on MANIFEST's test split: metrics, ablations, CIs, paired tests and an HTML report."""
    import sys

    from kgrag.errors import InputError
    from kgrag.eval.harness import parse_sweep, run_eval

    stray = [x for x in more_sweeps if "=" not in x]
    if stray:
        raise InputError(f"unexpected argument(s) {stray}", fix="only AXIS=V1,V2 sweep specs may follow MANIFEST")
    try:
        levels = [float(x) for x in _split(noise)]
    except ValueError as e:
        raise InputError(f"--noise {noise}: not a number", fix="e.g. --noise 0.5") from e
    res = run_eval(settings_for(home), manifest, _split(tasks), sweep=parse_sweep([*sweeps, *more_sweeps]),
                   reranks=_split(reranks), graph_random=graph == "random", noise=levels, shift=shift,
                   out_dir=out_dir, model_name=model_name, limit=limit, seed=seed, n_boot=n_boot, n_perm=n_perm,
                   query_from=query_from, concepts=concepts, meteor=not no_meteor, progress=progress,
                   command="kgrag " + " ".join(sys.argv[1:]), keep_scratch=keep_scratch)
    if as_json:
        import json

        from kgrag.eval.report import to_json

        emit_json(json.loads(to_json(res)))
    else:
        _summary(res)
