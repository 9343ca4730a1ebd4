"""A rich progress bar behind a plain callable, so library code needs no ``if`` per step."""

from __future__ import annotations

from collections.abc import Callable


def progress_bar(enabled: bool, total: int, label: str) -> Callable[..., None]:
    """``advance(n, done=False)``: moves a transient rich bar by ``n``; ``done`` closes it.

    A no-op when ``enabled`` is False.
    """
    if not enabled:
        return lambda n, done=False: None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                 transient=True)
    p.start()
    task = p.add_task(label, total=total)

    def advance(n: int, done: bool = False) -> None:
        p.advance(task, n)
        if done:
            p.stop()

    return advance
