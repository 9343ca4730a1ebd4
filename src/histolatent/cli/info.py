"""``histolatent info``: versions, threads, devices and bf16 support."""

from __future__ import annotations

import json

import typer

from histolatent.machine import machine_info


def command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Versions, threads, devices and bf16 support of this machine (bf16: the measured matmul speed-up)."""
    from histolatent.cli._show import print_table

    info = machine_info(probe_bf16=True)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    shown = {k: ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v for k, v in info.items()}
    print_table(shown.items(), ("", ""), title="histolatent info", header=False)
