"""The ``histolatent`` command: a thin layer over the Python API.

Each command group lives in its own module exposing ``app`` (a ``typer.Typer``) or, for a
single command, ``command`` (a function); :func:`build_app` adds them. The modules are
imported only when the CLI starts, so the API stays light. ``docs/cli.md`` is generated
from this app (``python -m histolatent.cli.docs``).
"""

from __future__ import annotations

import sys

import typer

from histolatent.errors import InputError

app = typer.Typer(
    name="histolatent",
    help="Unsupervised representation learning for histopathology, from nuclei to whole slides.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_built = False


def build_app() -> typer.Typer:
    """The app with every command added (once; later calls return the same app)."""
    global _built
    if _built:
        return app
    from histolatent.cli import (
        bench,
        cluster,
        compress,
        demo,
        embed,
        finetune,
        info,
        nuclei,
        probe,
        runs,
        samples,
        slide,
        slides,
        stain,
        synth,
        train,
    )

    # single commands, then groups of sub-commands, in the order `histolatent --help` lists them
    for name, module in (("info", info), ("samples", samples), ("train", train), ("demo", demo), ("bench", bench),
                         ("embed", embed), ("finetune", finetune), ("probe", probe), ("cluster", cluster), ("compress", compress)):
        app.command(name, help=module.command.__doc__)(module.command)
    for name, module in (("runs", runs), ("slide", slide), ("slides", slides), ("stain", stain), ("nuclei", nuclei),
                         ("synth", synth)):
        app.add_typer(module.app, name=name)
    _built = True
    return app


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    The one error path: an :class:`InputError` (and an operating-system error on a named file:
    a read-only folder, a folder where a file was expected) is one clear line and exit code 2;
    ``--help`` and bad options exit as click decides.
    """
    build_app()
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except InputError as err:  # a user error: one clear line, no traceback
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        return 2
    except OSError as err:
        if err.filename is None:
            raise
        typer.secho(f"error: {err.filename!s}: {err.strerror or err}", fg=typer.colors.RED, err=True)
        return 2
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
