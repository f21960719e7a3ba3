"""``kgrag kg``, ``kgrag curate``, ``kgrag audit``."""

from __future__ import annotations

import json
import sys

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


@click.group("kg")
def kg() -> None:
    """Build and inspect the causal knowledge graph."""


@kg.command("build")
@click.option("--tau", type=float, default=None, help="Retention ratio (default KGRAG_KG__TAU = 0.7).")
@click.option("--alpha", type=float, default=None, help="Significance level of the CI tests.")
@click.option("--min-support", type=int, default=None, help="Minimum co-occurrences of a statistical edge.")
@home_option
@json_option
def build(tau, alpha, min_support, home, as_json) -> None:
    """Candidate edges → CI pruning → DAG → τ → graph store (locked edges kept)."""
    from kgrag.kg.build import build_graph

    over = {k: v for k, v in {"tau": tau, "ci_alpha": alpha, "min_support": min_support}.items() if v is not None}
    settings = settings_for(home)
    if over:
        settings.kg = settings.kg.model_copy(update=over)
    rep = build_graph(settings)
    if as_json:
        emit_json(rep.to_dict())
        return
    click.echo(f"graph {rep.graph_version}: {rep.n_accepted} accepted, {rep.n_proposed} proposed, "
               f"{rep.n_rejected} rejected from {rep.n_candidates} candidates over {rep.n_train_studies} train studies "
               f"({rep.n_pruned_ci} pruned by CI tests, {rep.n_cycle_breaks} cycle breaks, {rep.n_locked_kept} locked kept) "
               f"in {rep.seconds:.1f}s")
    ch = rep.changes
    click.echo(f"changes: +{len(ch['added'])} -{len(ch['removed'])} p moved {len(ch['p_moved'])}; report {rep.report_path}")


@kg.command("show")
@click.option("--status", type=click.Choice(["accepted", "proposed", "rejected"]), default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@home_option
@json_option
def show(status, limit, home, as_json) -> None:
    """List edges, strongest first."""
    from kgrag.graph.factory import open_store

    store = open_store(settings_for(home))
    edges = sorted(store.edges(status), key=lambda e: -(e["p"] or 0))
    counts, version = store.counts(), store.version()
    store.close()
    if as_json:
        emit_json({"graph_version": version, "counts": counts, "edges": edges[:limit]})
        return
    click.echo(f"graph {version}: {counts}")
    for e in edges[:limit]:
        lock = " locked" if e["locked"] else ""
        click.echo(f"{e['src']:>28} -> {e['dst']:<22} p={e['p']:.3f} support={e['support']:<5} "
                   f"p_value={(e['p_value'] if e['p_value'] is not None else float('nan')):.2g} {e['status']}{lock}")


@kg.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@home_option
def export(file, home) -> None:
    """Write concepts and edges to a JSON file."""
    from kgrag.graph.factory import open_store

    store = open_store(settings_for(home))
    data = store.export()
    store.close()
    with open(file, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    click.echo(f"wrote {len(data['concepts'])} concepts, {len(data['edges'])} edges to {file}")


@kg.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@home_option
@json_option
def import_(file, home, as_json) -> None:
    """Load concepts and edges from a JSON export (overwrites locked decisions)."""
    from kgrag.errors import InputError
    from kgrag.graph.factory import open_store

    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{file} is not a UTF-8 JSON graph export: {e}",
                         fix="pass a file written by 'kgrag kg export'") from e
    if not isinstance(data, dict):
        raise InputError(f"{file} holds a JSON {type(data).__name__}, not a graph export",
                         fix="pass a file written by 'kgrag kg export'")
    store = open_store(settings_for(home))
    try:
        store.import_(data)
        res = {"concepts": len(data.get("concepts", [])), "edges": len(data.get("edges", [])),
               "graph_version": store.version()}
    finally:
        store.close()
    if as_json:
        emit_json(res)
    else:
        click.echo(f"imported {res['concepts']} concepts, {res['edges']} edges (graph {res['graph_version']})")


@click.group("curate")
def curate() -> None:
    """Review causal edges: export to CSV, import a reviewed CSV, set one edge."""


@curate.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--status", type=click.Choice(["accepted", "proposed", "rejected"]), default=None)
@home_option
def curate_export(file, status, home) -> None:
    from kgrag.graph.factory import open_store
    from kgrag.kg.curate import export_csv

    store = open_store(settings_for(home))
    n = export_csv(store, file, status=status)
    store.close()
    click.echo(f"wrote {n} edges to {file}")


@curate.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--by", "reviewer", default=None, help="Reviewer for rows without reviewed_by.")
@home_option
@json_option
def curate_import(file, reviewer, home, as_json) -> None:
    """Apply a reviewed CSV in one transaction: every row is validated first; any bad row
    (or two rows that disagree about one edge) and nothing is applied.  An edited p is
    applied as a human estimate (source 'human', kept by rebuilds)."""
    from kgrag.graph.factory import open_store
    from kgrag.kg.curate import import_csv

    store = open_store(settings_for(home))
    try:
        res = import_csv(store, file, default_reviewer=reviewer)
    finally:
        store.close()
    if as_json:
        emit_json(res)
    else:
        click.echo(f"applied {res['applied']} changes ({res['p_edits']} with a new p), "
                   f"{res['unchanged']} rows unchanged")


@curate.command("set")
@click.argument("src")
@click.argument("dst")
@click.option("--status", type=click.Choice(["accepted", "proposed", "rejected"]), required=True)
@click.option("--by", "reviewer", required=True, help="Reviewer name.")
@click.option("--note", default=None)
@click.option("--unlock", is_flag=True, help="Record the review without locking the edge.")
@home_option
@json_option
def curate_set(src, dst, status, reviewer, note, unlock, home, as_json) -> None:
    """Record a decision on one edge (locked: no rebuild overwrites it)."""
    from kgrag.graph.factory import open_store

    store = open_store(settings_for(home))
    try:
        r = store.set_status(src, dst, status, reviewed_by=reviewer, note=note, locked=not unlock)
    finally:
        store.close()
    if as_json:
        emit_json(r)
    else:
        click.echo(f"{src} -> {dst}: {r['status']} by {r['reviewed_by']}{' (locked)' if r['locked'] else ''}")


@click.command("audit")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Write a self-contained HTML report.")
@home_option
@json_option
def audit(html_path, home, as_json) -> None:
    """Check the graph: cycles, leakage, weak edges, contradictions, orphans, provenance, drift."""
    from kgrag.kg.audit import run_audit

    settings = settings_for(home)
    rep = run_audit(settings, html_path=html_path)
    if as_json:
        emit_json(rep)
    else:
        for f in rep["findings"]:
            click.echo(f"[{f['severity'].upper():7}] {f['check']}: {f['message']}")
        click.echo(f"{rep['summary']['errors']} errors, {rep['summary']['warnings']} warnings"
                   + (f"; report {html_path}" if html_path else ""))
    if rep["summary"]["errors"]:
        sys.exit(1)
