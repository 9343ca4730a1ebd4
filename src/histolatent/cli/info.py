"""``histolatent info``: versions, threads, devices and bf16 support."""

from __future__ import annotations

import json

import typer

from histolatent.machine import machine_info


def command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Versions, threads, devices and bf16 support of this machine."""
    info = machine_info(probe_bf16=True)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="histolatent info", show_header=False)
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        table.add_row(k, str(v))
    Console().print(table)
