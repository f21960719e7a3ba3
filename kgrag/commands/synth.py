"""``kgrag synth``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, json_option


@click.command("synth")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--n", "n", type=int, default=1000, show_default=True, help="Number of studies.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shift", is_flag=True, help="Reverse the site–diagnosis correlation in val/test.")
@json_option
def synth(outdir: str, n: int, seed: int, shift: bool, as_json: bool) -> None:
    """Generate a phantom corpus from a known causal model (manifest, PNGs, truth.json)."""
    from kgrag.synth.generate import generate

    s = generate(outdir, n, seed, shift=shift, progress=True)
    if as_json:
        emit_json(s.to_dict())
    else:
        click.echo(f"wrote {s.n} studies to {s.outdir} ({', '.join(f'{k}: {v}' for k, v in sorted(s.splits.items()))})")
        click.echo(f"manifest: {s.outdir}/manifest.jsonl  truth: {s.outdir}/truth.json")
