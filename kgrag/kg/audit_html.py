"""The self-contained HTML audit report (matplotlib figures inlined as PNG)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figures(edges: list[dict[str, Any]], concepts: list[dict[str, Any]], build: dict[str, Any] | None) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    figs = []
    acc = [e for e in edges if e["status"] == "accepted"]
    deg: dict[str, int] = {c["id"]: 0 for c in concepts}
    for e in acc:
        deg[e["src"]] = deg.get(e["src"], 0) + 1
        deg[e["dst"]] = deg.get(e["dst"], 0) + 1
    fig, ax = plt.subplots(1, 2, figsize=(10, 3))
    ax[0].hist(list(deg.values()), bins=range(0, max(deg.values() or [0]) + 2), color="#4a7")
    ax[0].set_title("Degree (accepted edges)")
    ax[1].hist([e.get("support") or 0 for e in edges], bins=30, color="#47a")
    ax[1].set_title("Support (all edges)")
    figs.append(("Degree and support", _png(fig)))
    fig, ax = plt.subplots(1, 2, figsize=(10, 3))
    for st, col in (("accepted", "#4a7"), ("proposed", "#da4"), ("rejected", "#c55")):
        ax[0].hist([e["p"] or 0 for e in edges if e["status"] == st], bins=20, alpha=0.6, label=st, color=col)
        ax[1].hist([e["p_value"] for e in edges if e["status"] == st and e.get("p_value") is not None], bins=20, alpha=0.6, label=st, color=col)
    ax[0].set_title("Causal power p")
    ax[1].set_title("p-value of the test that kept or dropped it")
    ax[0].legend()
    figs.append(("p and p-value", _png(fig)))
    if build and build.get("tau_curve"):
        fig, ax = plt.subplots(figsize=(5, 3))
        xs, ys = zip(*build["tau_curve"], strict=True)
        ax.plot(xs, ys, marker="o")
        ax.axvline(build["params"]["tau"], color="red", linestyle="--", label=f"τ = {build['params']['tau']}")
        ax.set_xlabel("τ")
        ax.set_ylabel("accepted edges")
        ax.legend()
        ax.set_title("Retention curve")
        figs.append(("τ curve", _png(fig)))
    g = nx.DiGraph()
    role = {c["id"]: c["role"] for c in concepts}
    for e in acc:
        g.add_edge(e["src"], e["dst"], w=e["p"] or 0)
    if g.number_of_nodes():
        layer = {"ImageFinding": 0, "Finding": 1, "Diagnosis": 2}
        for n in g.nodes:
            g.nodes[n]["layer"] = layer.get(role.get(n, "Finding"), 1)
        pos = nx.multipartite_layout(g, subset_key="layer")
        fig, ax = plt.subplots(figsize=(11, 7))
        colors = ["#7ab" if role.get(n) == "ImageFinding" else "#da6" if role.get(n) == "Finding" else "#c66" for n in g.nodes]
        nx.draw_networkx(g, pos, ax=ax, node_color=colors, font_size=7, node_size=500, arrowsize=10,
                         width=[0.5 + 3 * g.edges[u, v]["w"] for u, v in g.edges])
        ax.set_title("Accepted causal graph: image findings → findings → diagnoses")
        ax.axis("off")
        figs.append(("Diagnosis neighbourhoods", _png(fig)))
    return figs


def _pv(e: dict[str, Any]) -> str:
    return "" if e.get("p_value") is None else f"{e['p_value']:.2g}"


def write_html(path: str, rep: dict[str, Any], edges: list[dict[str, Any]], concepts: list[dict[str, Any]],
               build: dict[str, Any] | None) -> None:
    esc = html.escape
    rows = "".join(
        f"<tr class='{esc(f['severity'])}'><td>{esc(f['severity'])}</td><td>{esc(f['check'])}</td><td>{esc(f['message'])}"
        f"<br><small>{esc(', '.join(map(str, f['items'][:15])))}</small></td></tr>" for f in rep["findings"])
    top = sorted((e for e in edges if e["status"] == "accepted"), key=lambda e: -((e["p"] or 0) * (e.get("support") or 0)))[:25]
    top_rows = "".join(
        f"<tr><td>{esc(e['src'])}</td><td>{esc(e['dst'])}</td><td>{(e['p'] or 0):.3f}</td><td>{e.get('support')}</td>"
        f"<td>{_pv(e)}</td>"
        f"<td>{esc(e.get('source') or '')}</td></tr>" for e in top)
    figs = "".join(f"<h3>{esc(t)}</h3><img src='{src}' alt='{esc(t)}'>" for t, src in _figures(edges, concepts, build))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>kgrag audit {esc(rep['graph_version'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{border-bottom:1px solid #ddd;padding:4px;text-align:left;vertical-align:top}}
tr.error td{{background:#fdd}}tr.warning td{{background:#ffd}}img{{max-width:100%}}</style></head><body>
<h1>Causal graph audit</h1><p>graph version <code>{esc(rep['graph_version'])}</code> — {rep['counts']['concepts']} concepts,
{rep['counts']['edges']} edges ({rep['counts']['accepted']} accepted, {rep['counts']['proposed']} proposed, {rep['counts']['rejected']} rejected);
<b>{rep['summary']['errors']} errors</b>, {rep['summary']['warnings']} warnings.</p>
<h2>Checks</h2><table><tr><th>severity</th><th>check</th><th>finding</th></tr>{rows or '<tr><td colspan=3>no findings</td></tr>'}</table>
<h2>Top accepted edges by evidence</h2><table><tr><th>cause</th><th>effect</th><th>p</th><th>support</th><th>p-value</th><th>source</th></tr>{top_rows}</table>
<h2>Plots</h2>{figs}</body></html>"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)
