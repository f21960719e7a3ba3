"""``kgrag audit``: checks a knowledge engineer runs before trusting the graph.

Errors (exit code 1): cycles among accepted edges; leakage (an edge's
provenance names a test-split study).  Warnings: accepted edges with support
below the floor or p-value above alpha; contradictory pairs (c→e and e→c);
orphan concepts (no edge) and diagnoses unreachable from any image finding;
provenance naming studies that no longer exist; concepts without definitions;
drift since the previous build.
"""

from __future__ import annotations

from typing import Any

from kgrag.causal import scoring
from kgrag.graph.store import GraphStore


def _f(check: str, severity: str, message: str, items: list[Any] | None = None) -> dict[str, Any]:
    return {"check": check, "severity": severity, "message": message, "items": items or []}


def audit_graph(edges: list[dict[str, Any]], concepts: list[dict[str, Any]], splits: dict[str, str], *,
                min_support: int, alpha: float, builds: list[dict[str, Any]] | None = None,
                drift_threshold: float = 0.1) -> list[dict[str, Any]]:
    out = []
    acc = [e for e in edges if e["status"] == "accepted"]
    cycles = scoring.find_cycles(edges)
    if cycles:
        out.append(_f("cycles", "error", f"{len(cycles)} cycle(s) among accepted edges", [" -> ".join(c + c[:1]) for c in cycles[:20]]))
    leak = [f"{e['src']}->{e['dst']}: {s}" for e in edges for s in e.get("evidence_studies") or [] if splits.get(s) == "test"]
    if leak:
        out.append(_f("leakage", "error", f"{len(leak)} provenance entries name test-split studies", leak[:20]))
    weak = [f"{e['src']}->{e['dst']} support={e['support']}" for e in acc if (e.get("support") or 0) < min_support and e.get("source") != "human"]
    if weak:
        out.append(_f("low_support", "warning", f"{len(weak)} accepted edges have support below {min_support}", weak[:50]))
    hi_p = [f"{e['src']}->{e['dst']} p_value={e['p_value']:.3g}" for e in acc if e.get("p_value") is not None and e["p_value"] > alpha]
    if hi_p:
        out.append(_f("high_p_value", "warning", f"{len(hi_p)} accepted edges have p-value above {alpha}", hi_p[:50]))
    keys = {(e["src"], e["dst"]) for e in edges if e["status"] != "rejected"}
    contra = sorted({tuple(sorted(k)) for k in keys if (k[1], k[0]) in keys})
    if contra:
        out.append(_f("contradictions", "warning", f"{len(contra)} pairs have edges both ways", [f"{a}<->{b}" for a, b in contra]))
    touched = {x for e in edges for x in (e["src"], e["dst"])}
    orphans = sorted(c["id"] for c in concepts if c["id"] not in touched)
    if orphans:
        out.append(_f("orphans", "warning", f"{len(orphans)} concepts have no edge", orphans))
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(c["id"] for c in concepts)
    g.add_edges_from((e["src"], e["dst"]) for e in acc)
    sources = [c["id"] for c in concepts if c["role"] == "ImageFinding"]
    reach = set().union(*(nx.descendants(g, s) for s in sources)) if sources else set()
    unreach = sorted(c["id"] for c in concepts if c["role"] == "Diagnosis" and c["id"] not in reach and c["id"] != "no_finding")
    if unreach:
        out.append(_f("unreachable", "warning", f"{len(unreach)} diagnoses unreachable from any image finding", unreach))
    missing = sorted({f"{e['src']}->{e['dst']}: {s}" for e in edges for s in e.get("evidence_studies") or [] if s not in splits})
    if missing:
        out.append(_f("missing_provenance", "warning", f"{len(missing)} provenance entries name unknown studies", missing[:20]))
    nodef = sorted(c["id"] for c in concepts if not (c.get("definition") or "").strip())
    if nodef:
        out.append(_f("definitions", "warning", f"{len(nodef)} concepts have no definition", nodef))
    if builds and len(builds) >= 2:
        prev = {(e["src"], e["dst"]): e for e in builds[-2].get("edges", []) if e["status"] == "accepted"}
        cur = {(e["src"], e["dst"]): e for e in edges if e["status"] == "accepted"}
        added, removed = sorted(set(cur) - set(prev)), sorted(set(prev) - set(cur))
        moved = [k for k in set(cur) & set(prev) if abs((cur[k]["p"] or 0) - (prev[k]["p"] or 0)) > drift_threshold]
        if added or removed or moved:
            out.append(_f("drift", "warning", f"since the previous build: +{len(added)} -{len(removed)} accepted, {len(moved)} moved by > {drift_threshold}",
                          [f"+{a}->{b}" for a, b in added] + [f"-{a}->{b}" for a, b in removed] + [f"~{a}->{b}" for a, b in moved]))
    return out


def run_audit(settings: Any, html_path: str | None = None, *, store: GraphStore | None = None, docstore: Any = None) -> dict[str, Any]:
    from kgrag.docstore import DocStore
    from kgrag.kg.build import latest_build_reports

    own_store, own_doc = store is None, docstore is None
    if store is None:
        from kgrag.graph.factory import open_store

        store = open_store(settings)
    docstore = docstore or DocStore.from_settings(settings)
    try:
        edges, concepts = store.edges(), store.concepts()
        splits = docstore.splits()
        version = store.version()
        builds = latest_build_reports(settings, 2)
    finally:
        if own_store:
            store.close()
        if own_doc:
            docstore.close()
    findings = audit_graph(edges, concepts, splits, min_support=settings.kg.min_support, alpha=settings.kg.ci_alpha,
                           builds=builds, drift_threshold=settings.kg.drift_threshold)
    rep = {
        "graph_version": version,
        "counts": {"concepts": len(concepts), "edges": len(edges),
                   **{s: sum(1 for e in edges if e["status"] == s) for s in ("accepted", "proposed", "rejected")}},
        "findings": findings,
        "summary": {"errors": sum(f["severity"] == "error" for f in findings),
                    "warnings": sum(f["severity"] == "warning" for f in findings)},
    }
    if html_path:
        from kgrag.kg.audit_html import write_html

        write_html(html_path, rep, edges, concepts, builds[-1] if builds else None)
    return rep
