"""A rich progress bar for training: steps, items/s, ETA and the latest loss terms."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, *, total: int, start: int, items_per_step: int, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.items_per_step = items_per_step
        self._n = 0
        if enabled:
            self._p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[rate]} items/s"), TimeRemainingColumn(),
                               TextColumn("{task.fields[terms]}"), transient=False)
            self._task = self._p.add_task(f"train {label}", total=total, completed=start, rate="-", terms="")

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._p.__exit__(*exc)

    def advance(self, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._n += 1
        if self._n % 5 and self._n > 1:  # rendering every step costs more than it shows
            self._p.advance(self._task)
            return
        task = self._p.tasks[0]
        rate = f"{task.speed * self.items_per_step:.0f}" if task.speed else "-"
        terms = " ".join(f"{k}={v:.4g}" for k, v in list(values.items())[:3])
        self._p.update(self._task, advance=1, rate=rate, terms=terms)
