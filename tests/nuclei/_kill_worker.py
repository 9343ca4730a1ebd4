"""A Dask worker plugin that kills its own worker process once, when it starts its first task
(the marker file makes it once per test, across the restarted workers)."""

from __future__ import annotations

import os
import signal

from distributed import WorkerPlugin


class KillOnce(WorkerPlugin):
    name = "kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing":
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{key} {os.getpid()}".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
