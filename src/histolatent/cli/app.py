"""The ``histolatent`` command: a thin layer over the Python API.

Each command group lives in its own module exposing ``app`` (a ``typer.Typer``) or, for a
single command, ``command`` (a function). Add it to ``_GROUPS`` / ``_COMMANDS`` below;
modules are imported only when the CLI starts, so the API stays light.
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer

from histolatent.errors import InputError

app = typer.Typer(
    name="histolatent",
    help="Unsupervised representation learning for histopathology, from nuclei to whole slides.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, group name) — a group of sub-commands
_GROUPS: list[tuple[str, str]] = [
    ("runs", "runs"),
    ("slide", "slide"),
    ("stain", "stain"),
    ("nuclei", "nuclei"),
    ("synth", "synth"),
]
# (module, command name) — a single command
_COMMANDS: list[tuple[str, str]] = [
    ("info", "info"),
    ("samples", "samples"),
    ("train", "train"),
    ("demo", "demo"),
    ("bench", "bench"),
    ("embed", "embed"),
    ("probe", "probe"),
    ("cluster", "cluster"),
    ("compress", "compress"),
]


def _build() -> typer.Typer:
    for module, name in _COMMANDS:
        mod = import_module(f"histolatent.cli.{module}")
        app.command(name, help=mod.command.__doc__)(mod.command)
    for module, name in _GROUPS:
        mod = import_module(f"histolatent.cli.{module}")
        app.add_typer(mod.app, name=name)
    return app


def main() -> None:
    _build()
    try:
        app()
    except InputError as err:  # a user error: one clear line, no traceback
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
