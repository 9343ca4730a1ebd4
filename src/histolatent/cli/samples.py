"""``histolatent samples``: fetch and verify the real sample images."""

from __future__ import annotations

import typer


def command(
    name: list[str] = typer.Argument(None, help="Samples to fetch (default: all)."),
    list_only: bool = typer.Option(False, "--list", help="List the samples and where they are cached."),
) -> None:
    """Fetch the real sample data (CMU-1-Small-Region.svs, tiatoolbox target image, MNIST 5k), verify
    SHA-256; cached in $HISTOLATENT_CACHE/samples (default ~/.cache/histolatent/samples)."""
    from histolatent import samples
    from histolatent.cli._show import print_table

    rows = []
    for n in name or samples.names():
        s = samples.SAMPLES.get(n)
        if s is None:
            samples.path(n)  # raises a clear InputError naming the sample
        cached = (samples.cache_dir() / s.filename).is_file()
        if list_only:
            rows.append((n, f"{s.package}=={s.version}", samples.cache_dir() / s.filename,
                         "cached" if cached else "not fetched"))
        else:
            rows.append((n, f"{s.package}=={s.version}", samples.path(n), "cached" if cached else "fetched, SHA-256 ok"))
    print_table(rows, ("name", "source", "path", "status"), title="histolatent samples")
