"""Outputs of an evaluation run: ``results.json``, ``results.md``, ``report.html``,
``predictions.jsonl`` and the plots (matplotlib, PNG, also embedded in the HTML).

Plots: the α / τ / K sweeps (headline metric per task, with 95% bootstrap CIs), the
noise curves (metric against the share of injected irrelevant evidence), the
reliability curves of the diagnosis scorers, and per-concept AUC bars (causal vs
semantic, and the random graph when present).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: metrics plotted per task in the sweep and noise curves
HEADLINE = {"retrieval": ("concept_match@10", "mrr"), "diagnosis": ("vote_macro_auc", "answer_macro_auc"),
            "vqa": ("answer_accuracy", "vote_accuracy"), "report": ("retrieved_top1_clinical_f1", "generated_clinical_f1"),
            "extraction": ("present_micro_f1",)}


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if math.isnan(float(o)) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, set | frozenset):
        return sorted(o)
    return str(o)


def _clean(o: Any) -> Any:
    """NaN → None, recursively (JSON has no NaN)."""
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def to_json(res: Mapping[str, Any]) -> str:
    return json.dumps(_clean(res), default=_default, indent=1, ensure_ascii=False)


def fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def fmt_ci(ci: Mapping[str, Any] | None, nd: int = 3) -> str:
    if not ci or ci.get("value") is None:
        return "–"
    s = fmt(ci["value"], nd)
    if ci.get("low") is not None:
        s += f" [{fmt(ci['low'], nd)}, {fmt(ci['high'], nd)}]"
    return s


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


# -- tables ------------------------------------------------------------------------------------------


def variant_table(task_res: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    prim = task_res["primary"]
    rows = []
    for name, vr in task_res["variants"].items():
        rows.append([name] + [fmt_ci(vr["ci"].get(m)) for m in prim])
    return ["variant", *prim], rows


def paired_table(paired: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for p in paired:
        ci = p.get("ci") or {}
        rows.append([f"{p['a']} − {p['b']}", p["metric"], fmt(p.get("a_value")), fmt(p.get("b_value")),
                     fmt(p.get("difference")) + (f" [{fmt(ci.get('low'))}, {fmt(ci.get('high'))}]" if ci.get("low") is not None else ""),
                     fmt(p.get("p_value"), 4)])
    return ["comparison", "metric", "a", "b", "difference [95% CI]", "p (paired permutation)"], rows


def group_table(g: Mapping[str, Any], prim: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    rows = [[v] + [fmt_ci(vals["ci"].get(m)) if vals.get("ci") else fmt(vals.get(m)) for m in prim]
            for v, vals in g["variants"].items()]
    return ["variant", *prim], rows


def detail_lines(task: str, tr: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    main = [v for v in ("causal", "semantic", "pagerank", "none", "random_graph") if v in tr["variants"]]
    if task == "retrieval":
        cols = ["recall@1", "recall@5", "recall@10", "mrr", "top1_accuracy", "top10_accuracy",
                "concept_match@1", "concept_match@5", "concept_match@10", "mean_jaccard"]
        out += _table(["variant", *cols], [[v] + [fmt(tr["variants"][v]["metrics"].get(c)) for c in cols] for v in main])
        pr = tr.get("pair_retrieval") or {}
        if "mrr" in pr:
            out += ["", f"Exact-pair retrieval (encoder only, {pr['n']} test images against the test reports): "
                        + ", ".join(f"{k} {fmt(pr[k])} (chance {fmt(pr.get('chance_' + k))})"
                                    for k in ("recall@1", "recall@5", "recall@10") if k in pr)
                    + f", MRR {fmt(pr['mrr'])}."]
    elif task == "diagnosis":
        m0 = tr["variants"][main[0]]["metrics"]
        cs = m0["concepts"]
        hdr = ["concept", "prevalence"] + [f"{v} {s} AUC" for v in main for s in ("vote", "answer")
                                           if tr["variants"][v]["metrics"].get(s)]
        rows = []
        for c in cs:
            r = [c, fmt(m0["prevalence"][c])]
            for v in main:
                for s in ("vote", "answer"):
                    sc = tr["variants"][v]["metrics"].get(s)
                    if sc:
                        r.append(fmt((sc["per_concept"].get(c) or {}).get("auc")))
            rows.append(r)
        out += _table(hdr, rows)
        cal = [[v, s, fmt(tr["variants"][v]["metrics"][s]["ece"]), fmt(tr["variants"][v]["metrics"][s]["macro_auc"]),
                fmt(tr["variants"][v]["metrics"][s]["macro_balanced_accuracy"])]
               for v in main for s in ("vote", "answer") if tr["variants"][v]["metrics"].get(s)]
        out += ["", *_table(["variant", "scorer", "ECE", "macro-AUC", "macro balanced accuracy"], cal)]
    elif task == "vqa":
        cols = ["accuracy", "answered_accuracy", "coverage", "auc", "precision", "recall", "f1", "balanced_accuracy", "ece"]
        rows = [[v, s] + [fmt((tr["variants"][v]["metrics"].get(s) or {}).get(c)) for c in cols]
                for v in main for s in ("answer", "vote") if tr["variants"][v]["metrics"].get(s)]
        out += _table(["variant", "scorer", *cols], rows)
    elif task == "report":
        cols = ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"]
        rows = []
        for v in main:
            for src in ("generated", "retrieved_top1"):
                m = tr["variants"][v]["metrics"].get(src)
                if not m:
                    continue
                rows.append([v, src] + [fmt(m.get(c)) for c in cols] + [
                    fmt(m["sacrebleu"]["bleu"]), fmt(m["rouge_score_l_f1"]), fmt(m["clinical"]["micro_precision"]),
                    fmt(m["clinical"]["micro_recall"]), fmt(m["clinical"]["micro_f1"]), fmt(m["clinical"]["macro_f1"])])
        out += _table(["variant", "text", *cols, "sacreBLEU", "rouge-score L", "clin. P", "clin. R", "clin. micro-F1",
                       "clin. macro-F1"], rows)
        out += ["", "pycocoevalcap metrics on its PTB tokenization; CIDEr is the toolkit's CIDEr-D; sacreBLEU "
                    "(13a, 0–1) and rouge-score (F1, β = 1) on the raw text; clinical P/R/F1 over present concept sets "
                    "(kgrag's extractor on both sides)."]
    elif task == "extraction":
        m = tr["variants"]["extractor"]["metrics"]
        rows = [[name, fmt(m[name]["micro_precision"]), fmt(m[name]["micro_recall"]), fmt(m[name]["micro_f1"]),
                 fmt(m[name]["macro_f1"])] for name in ("present", "u_ones")]
        out += _table(["policy", "micro P", "micro R", "micro F1", "macro F1"], rows)
        per = m["present"]["per_label"]
        out += ["", *_table(["concept", "support", "P", "R", "F1"],
                            [[c, str(v["support"]), fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"])]
                             for c, v in per.items() if v["support"]])]
    return out


def markdown(res: Mapping[str, Any]) -> str:
    run, home = res["run"], res["home"]
    git = run.get("git") or {}
    lines = [f"# kgrag eval — {', '.join(res['tasks'])}", "",
             f"- command: `{run['command']}`",
             f"- commit: {git.get('commit', 'unknown')}{' (uncommitted changes)' if git.get('dirty') else ''}",
             f"- manifest: {res['manifest']['manifest']} — {res['manifest']['n_evaluated_studies']} test studies "
             f"evaluated (of {res['manifest']['n_test']})",
             f"- home: {home['path']}; graph {(res.get('graphs') or {}).get('home', {}).get('graph_version', '–')}; "
             f"index {(home.get('index') or {}).get('version', '–')}; model {(home.get('model') or {}).get('fingerprint', '–')}",
             f"- seed {run['seed']}; bootstrap {run['n_boot']} resamples (95% percentile CIs); paired permutation "
             f"test with {run['n_permutations']} resamples; {run.get('seconds', '–')} s on "
             f"{(run.get('machine') or {}).get('cpus', '?')} CPUs", ""]
    for task, tr in res["results"].items():
        lines += [f"## {task}", ""]
        if "skipped" in tr:
            lines += [f"Skipped: {tr['skipped']}", ""]
            continue
        h, rows = variant_table(tr)
        lines += [f"{tr['n_queries']} queries; value [95% bootstrap CI]", "", *_table(h, rows), ""]
        if tr["paired"]:
            h, rows = paired_table(tr["paired"])
            lines += ["Paired tests", "", *_table(h, rows), ""]
        for g, gr in tr.get("groups", {}).items():
            h, rows = group_table(gr, tr["primary"])
            lines += [f"### {g} ({gr['n']} queries)", "", *_table(h, rows), ""]
            if gr["paired"]:
                h, rows = paired_table(gr["paired"])
                lines += [*_table(h, rows), ""]
        det = detail_lines(task, tr)
        if det:
            lines += ["### Details", "", *det, ""]
    if res.get("skipped"):
        lines += ["Queries not made: " + ", ".join(f"{k}: {v}" for k, v in res["skipped"].items()), ""]
    if res.get("failures"):
        lines += [f"{len(res['failures'])} queries failed (first: {res['failures'][0]})", ""]
    for n in res.get("notes", []):
        lines.append(f"- {n}")
    return "\n".join(lines) + "\n"


# -- plots --------------------------------------------------------------------------------------------


def _fig(w: float = 6.0, h: float = 4.0):
    from kgrag.deps import require

    Figure = require("matplotlib.figure").Figure
    fig = Figure(figsize=(w, h), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _variant_meta(res: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {v["name"]: v for v in res.get("variants", [])}


def plot_all(res: Mapping[str, Any], out: Path) -> list[tuple[str, Path]]:
    out.mkdir(parents=True, exist_ok=True)
    meta = _variant_meta(res)
    made: list[tuple[str, Path]] = []
    for task, tr in res["results"].items():
        if "variants" not in tr or task == "extraction":
            continue
        heads = [m for m in HEADLINE.get(task, ()) if m in tr["primary"]]
        defaults = res["run"].get("defaults", {})
        for axis in ("alpha", "tau", "k"):
            pts = sorted((meta[v]["value"], v) for v in tr["variants"] if v in meta and meta[v]["axis"] == axis)
            if axis in ("alpha", "k") and "causal" in tr["variants"] and defaults.get(axis) is not None \
                    and defaults[axis] not in {x for x, _ in pts} and pts:
                pts = sorted([*pts, (defaults[axis], "causal")])  # the shipped setting
            if len(pts) < 2:
                continue
            fig, ax = _fig()
            for m in heads:
                xs, ys, lo, hi = [], [], [], []
                for x, v in pts:
                    ci = tr["variants"][v]["ci"].get(m)
                    if not ci:
                        continue
                    xs.append(x)
                    ys.append(ci["value"])
                    lo.append(ci["value"] - (ci["low"] if ci["low"] is not None else ci["value"]))
                    hi.append((ci["high"] if ci["high"] is not None else ci["value"]) - ci["value"])
                if xs:
                    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=m)
            ax.set_xlabel({"alpha": "α (1 = semantic only)", "tau": "τ (retention ratio)", "k": "K (evidence kept)"}[axis])
            ax.set_title(f"{task}: {axis} sweep (95% bootstrap CI)")
            ax.legend(fontsize=8)
            made.append((f"{task}: {axis} sweep", _save(fig, out / f"sweep_{axis}_{task}.png")))
        noisy = [v for v in tr["variants"] if v in meta and meta[v]["axis"] == "noise"]
        if noisy:
            fig, ax = _fig()
            for base in sorted({meta[v]["base"] for v in noisy}):
                for m in heads[:1]:
                    pts = [(0.0, base)] + sorted((meta[v]["value"], v) for v in noisy if meta[v]["base"] == base)
                    xs = [x for x, v in pts if tr["variants"][v]["ci"].get(m)]
                    ys = [tr["variants"][v]["ci"][m]["value"] for x, v in pts if tr["variants"][v]["ci"].get(m)]
                    if xs:
                        ax.plot(xs, ys, marker="o", label=f"{base}: {m}")
            ax.set_xlabel("share of the top-K replaced by irrelevant studies")
            ax.set_title(f"{task}: noise injection")
            ax.legend(fontsize=8)
            made.append((f"{task}: noise", _save(fig, out / f"noise_{task}.png")))
        if task == "diagnosis":
            for scorer in ("vote", "answer"):
                fig, ax = _fig(5, 5)
                ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
                drawn = False
                for v in ("causal", "semantic", "pagerank", "none", "random_graph"):
                    m = (tr["variants"].get(v) or {}).get("metrics", {}).get(scorer)
                    if not m or not m.get("reliability"):
                        continue
                    b = m["reliability"]
                    ax.plot([x["confidence"] for x in b], [x["frequency"] for x in b], marker="o",
                            label=f"{v} (ECE {m['ece']:.3f})")
                    drawn = True
                if drawn:
                    ax.set_xlabel("predicted probability")
                    ax.set_ylabel("observed frequency")
                    ax.set_title(f"diagnosis reliability: {scorer}")
                    ax.legend(fontsize=8)
                    made.append((f"diagnosis reliability ({scorer})", _save(fig, out / f"reliability_{scorer}.png")))
            vs = [v for v in ("causal", "semantic", "random_graph") if v in tr["variants"]]
            m0 = tr["variants"][vs[0]]["metrics"]
            cs = m0["concepts"]
            fig, ax = _fig(max(6.0, 0.9 * len(cs) + 2), 4)
            series = [(v, s) for v in vs for s in ("vote", "answer") if tr["variants"][v]["metrics"].get(s)]
            w = 0.8 / max(1, len(series))
            for i, (v, s) in enumerate(series):
                vals = [((tr["variants"][v]["metrics"][s]["per_concept"].get(c) or {}).get("auc") or np.nan) for c in cs]
                ax.bar(np.arange(len(cs)) + i * w, vals, width=w, label=f"{v} {s}")
            ax.axhline(0.5, ls="--", color="grey", lw=1)
            ax.set_xticks(np.arange(len(cs)) + 0.4 - w / 2)
            ax.set_xticklabels(cs, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel("AUC")
            ax.set_ylim(0, 1)
            ax.set_title("per-concept AUC")
            ax.legend(fontsize=7)
            made.append(("diagnosis: per-concept AUC", _save(fig, out / "per_concept_auc.png")))
    return made


def html_report(res: Mapping[str, Any], md: str, plots: Sequence[tuple[str, Path]]) -> str:
    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not in_table:
                body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
                in_table = True
            elif set("".join(cells)) <= {"-"}:
                continue
            else:
                body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    if plots:
        body.append("<h2>Plots</h2>")
        for title, p in plots:
            data = base64.b64encode(p.read_bytes()).decode()
            body.append(f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{html.escape(title)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 6px;"
             "font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "figure{display:inline-block;margin:1em}img{max-width:560px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>kgrag eval</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")


def write_run(run_dir: Path, res: dict[str, Any], records: Mapping[str, Mapping[str, Any]], *, plots: bool = True) -> None:
    """Write every output of a run into ``run_dir`` and list them in ``res['outputs']``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for v, recs in records.items():
            for qid, r in sorted(recs.items()):
                f.write(json.dumps(_clean({"variant": v, "query": qid, **r}), default=_default) + "\n")
    made = []
    if plots and res.get("results"):
        made = plot_all(res, run_dir / "plots")
    res["outputs"] = {"results_json": str(run_dir / "results.json"), "markdown": str(run_dir / "results.md"),
                      "html": str(run_dir / "report.html"), "predictions": str(run_dir / "predictions.jsonl"),
                      "plots": [str(p) for _, p in made]}
    md = markdown(res)
    (run_dir / "results.md").write_text(md, encoding="utf-8")
    (run_dir / "report.html").write_text(html_report(res, md, made), encoding="utf-8")
    (run_dir / "results.json").write_text(to_json(res) + "\n", encoding="utf-8")
