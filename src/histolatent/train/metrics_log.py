"""metrics.csv (wide: one row per logged step and split) and optional TensorBoard."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from histolatent.io.atomic import atomic_path

_FIXED = ["step", "split", "elapsed_s", "lr"]


class MetricsLog:
    """Append rows to ``metrics.csv``; a new metric name rewrites the header (rare).

    On resume the rows after the resumed step are dropped, so the file matches what an
    uninterrupted run would have written.
    """

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None,
                 tensorboard_dir: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, object]] = []
        self.columns: list[str] = list(_FIXED)
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or _FIXED)
                self.rows = [r for r in reader if int(r["step"]) <= resume_step]
            self._rewrite()
        elif self.path.exists():
            self.path.unlink()
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError("train.tensorboard=true needs the tensorboard package: "
                                  "pip install 'histolatent[tensorboard]'") from err
            self._tb = SummaryWriter(str(tensorboard_dir))

    def log(self, step: int, split: str, values: dict[str, float], *, elapsed_s: float, lr: float | None) -> None:
        row: dict[str, object] = {"step": step, "split": split, "elapsed_s": round(elapsed_s, 3),
                                  "lr": "" if lr is None else lr}
        row.update(values)
        new = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new:
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def _rewrite(self) -> None:
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.columns)
                w.writeheader()
                w.writerows(self.rows)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
