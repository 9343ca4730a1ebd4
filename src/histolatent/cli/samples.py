"""``histolatent samples``: fetch and verify the real sample images."""

from __future__ import annotations

import typer


def command(
    name: list[str] = typer.Argument(None, help="Samples to fetch (default: all)."),
    list_only: bool = typer.Option(False, "--list", help="List the samples and where they are cached."),
) -> None:
    """Fetch the real sample data (CMU-1-Small-Region.svs, tiatoolbox target image), verify SHA-256."""
    from rich.console import Console
    from rich.table import Table

    from histolatent import samples

    wanted = name or samples.names()
    table = Table(title="histolatent samples")
    for col in ("name", "source", "path", "status"):
        table.add_column(col)
    for n in wanted:
        s = samples.SAMPLES.get(n)
        if s is None:
            samples.path(n)  # raises a clear InputError naming the sample
        cached = (samples.cache_dir() / s.filename).is_file()
        if list_only:
            table.add_row(n, f"{s.package}=={s.version}", str(samples.cache_dir() / s.filename),
                          "cached" if cached else "not fetched")
            continue
        p = samples.path(n)
        table.add_row(n, f"{s.package}=={s.version}", str(p), "cached" if cached else "fetched, SHA-256 ok")
    Console().print(table)
