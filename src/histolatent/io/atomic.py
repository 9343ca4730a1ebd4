"""Atomic writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from histolatent.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file lives in the same folder so that :func:`os.replace` is atomic.
    ``suffix`` keeps an extension on the temporary name for writers that dispatch on it
    (defaults to the suffix of ``path``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Like :func:`atomic_path` for several outputs that belong together: all or none.

    Yields one temporary path beside each of ``paths``. If the block succeeds, each is
    renamed onto its target; if any rename fails, the targets already replaced get their
    old contents back (or are removed if they did not exist). If the block fails, no target
    is touched.
    """
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield tmps
        moved: list[tuple[Path, Path | None]] = []
        try:
            for tmp, path in zip(tmps, targets, strict=True):
                backup = None
                if path.exists():
                    backup = path.with_name(f".{path.name}.{os.getpid()}.old")
                    os.replace(path, backup)
                moved.append((path, backup))
                os.replace(tmp, path)
        except BaseException:
            for path, backup in reversed(moved):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            raise
        for _, backup in moved:
            if backup is not None:
                with contextlib.suppress(FileNotFoundError):
                    backup.unlink()
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; rename it onto ``path`` if the block succeeds.

    For stores that are folders (zarr). An existing ``path`` is an error unless
    ``overwrite``; then it is replaced only once the new folder is complete. If the block
    fails, the temporary folder is removed and ``path`` is untouched.
    """
    import shutil

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
