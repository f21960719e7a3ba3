"""``kgrag query``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


def _print(res: dict) -> None:
    a = res["answer"]
    if a and a.get("text"):
        click.echo(f"ANSWER: {a['text']}")
    if res["image_findings"]:
        click.echo("image findings: " + ", ".join(f"{f['concept']} {f['probability']:.2f}" for f in res["image_findings"][:6]))
    for d in res["diagnoses"][:5]:
        click.echo(f"diagnosis {d['concept']}: {d['probability']:.2f}")
        for p in d["paths"][:2]:
            click.echo(f"    path {' -> '.join(p['nodes'])} ({p['strength']:.2f})")
        for cf in d["counterfactual"][:2]:
            do = ", ".join(f"{c} = {'present' if v else 'absent'}" for c, v in cf["do"].items())
            click.echo(f"    do({do}) -> {cf['probability']:.2f} (from {d['probability']:.2f})")
    click.echo("evidence:")
    for e in res["evidence"]:
        ll = "n/a" if e["causal_loglik"] is None else f"{e['causal_loglik']:.2f}"
        click.echo(f"  {e['rank']:>2}. {e['id']} score {e['score']:.3f} fused {e['similarity']['fused']:.3f} loglik {ll}")
        for s in e["sentences"][:2]:
            click.echo(f"        \"{s}\"")
    c = res["config"]
    click.echo(f"(graph {c['graph_version']}, index {c['index_version']}, alpha {c['alpha']}, k {c['k']}, rerank {c['rerank']})")
    g = (a or {}).get("generator") or {}
    if g:
        click.echo(f"(generator {g.get('name')}{' ' + g['model'] if g.get('model') else ''}, prompt {g.get('prompt_version')})")


@click.command("query")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Query image (repeatable).")
@click.option("--question", default=None, help="A question about the image (VQA).")
@click.option("--findings", default=None, help="Findings text, when there is no image (gives V_I).")
@click.option("--k", type=click.IntRange(min=1), default=None, help="Evidence items returned (default KGRAG_RETRIEVAL__K).")
@click.option("--n", type=click.IntRange(min=1), default=None, help="Stage-1 candidates reranked.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=None,
              help="Weight of similarity vs causal likelihood, in [0, 1] (1 = semantic only).")
@click.option("--rerank", type=click.Choice(["causal", "pagerank", "none"]), default=None)
@click.option("--modality", default=None, help="Skip the router and search this modality.")
@click.option("--batch", "batch", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSONL of queries ({images, question, findings}); models load once; one JSON line out per query.")
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--generator", "generator_kind", type=click.Choice(["grounded", "transformers", "http"]), default=None,
              help="Answer writer (default KGRAG_GENERATION__KIND: grounded, offline).")
@click.option("--model-path", type=click.Path(file_okay=False), default=None,
              help="Local transformers model or 'kgrag finetune' output for --generator transformers "
                   "(default KGRAG_GENERATION__MODEL_PATH).")
@home_option
@json_option
def query(images, question, findings, k, n, alpha, rerank, modality, batch, model_name, generator_kind, model_path, home,
          as_json) -> None:
    """Retrieve, rerank by the causal graph, explain and answer."""
    import sys

    from kgrag.generation.base import make_generator
    from kgrag.query.pipeline import Query, QueryPipeline, read_batch
    from kgrag.query.schema import validate_query_output

    settings = settings_for(home)
    queries = read_batch(batch) if batch else [Query(list(images), question, findings, k, n, alpha, rerank, modality)]
    for q in queries:
        q.k, q.n, q.alpha, q.rerank, q.modality = q.k or k, q.n or n, q.alpha if q.alpha is not None else alpha, q.rerank or rerank, q.modality or modality
    kind = generator_kind or settings.generation.kind
    # a language model writes token by token: show its progress on stderr for single queries
    gen = make_generator(settings, kind, model_path=model_path, progress=not batch and kind == "transformers")
    gen.warm_up()  # a missing model path or server setting fails before the indexes load
    pipe = QueryPipeline.from_settings(settings, model_name=model_name, generator=gen)
    try:
        bar = None
        if batch and len(queries) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(queries), desc="queries", unit="q", file=sys.stderr)
        for q in queries:
            res = pipe.run(q)
            validate_query_output(res)
            if as_json or batch:
                emit_json(res)
            else:
                _print(res)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        pipe.close()
