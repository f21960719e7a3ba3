"""``kgrag synth``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, json_option


@click.command("synth")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--n", "n", type=int, default=1000, show_default=True, help="Number of studies.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; recorded in manifest.info.json.")
@click.option("--style", type=click.Choice(["a", "b"]), default="a", show_default=True,
              help="Report phrasing and image renderer: a (the default corpus) or b (written independently, "
                   "held out from lexicon tuning).")
@click.option("--shift", is_flag=True,
              help="Make the test split out of distribution: the other style, shifted disease prevalence and the "
                   "site–diagnosis correlation reversed (train and val unchanged).")
@json_option
def synth(outdir: str, n: int, seed: int, style: str, shift: bool, as_json: bool) -> None:
    """Generate a phantom corpus from a known causal model (manifest, PNGs, truth.json, manifest.info.json)."""
    from kgrag.synth.generate import generate

    s = generate(outdir, n, seed, shift=shift, style=style, progress=True)
    if as_json:
        emit_json(s.to_dict())
    else:
        order = [sp for sp in ("train", "val", "test") if sp in s.styles]
        parts = [f"{sp}: " + ", ".join(f"{v} style {k}" for k, v in s.styles[sp].items())
                 + (" (shifted)" if s.shift and sp == "test" else "") for sp in order]
        click.echo(f"wrote {s.n} studies to {s.outdir} ({'; '.join(parts)})")
        click.echo(f"manifest: {s.outdir}/manifest.jsonl  truth: {s.outdir}/truth.json  info: {s.outdir}/manifest.info.json")
