"""``kgrag doctor``."""

from __future__ import annotations

import click

from kgrag.commands._common import emit_json, home_option, json_option, settings_for


@click.command("doctor")
@home_option
@json_option
@click.option("--no-start", is_flag=True, help="Do not start the embedded graph server.")
def doctor(home: str | None, as_json: bool, no_start: bool) -> None:
    """Check dependencies, the graph engine, the home and model paths."""
    from kgrag.doctor import FAIL, OK, run_checks

    settings = settings_for(home)
    checks = run_checks(settings, start_graph=not no_start)
    failed = [c for c in checks if c.status == FAIL]
    if as_json:
        emit_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        marks = {OK: "ok  ", "warn": "WARN", FAIL: "FAIL"}
        for c in checks:
            click.echo(f"[{marks[c.status]}] {c.name}: {c.detail}")
            if c.fix and c.status != OK:
                click.echo(f"       fix: {c.fix}")
        click.echo(f"{len(checks) - len(failed)}/{len(checks)} checks passed" + ("" if not failed else f", {len(failed)} failed"))
    if failed:
        raise SystemExit(1)
