"""Atomic writes: a crash leaves the old file or the new one, never half of one.

The one atomic-write helper module: :func:`atomic_path` for a file (a temporary name beside
it, renamed into place), :func:`atomic_paths` for several files that belong together (all or
none), :func:`atomic_folder` for a folder built as a whole (a data set with its manifest, a
zarr store), and the one-line writers :func:`write_text_atomic`, :func:`write_bytes_atomic` and
:func:`write_image_atomic`.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> from histolatent.io.atomic import atomic_folder, write_text_atomic
>>> root = Path(tempfile.mkdtemp())
>>> with atomic_folder(root / "set") as tmp:
...     _ = write_text_atomic(tmp / "a.txt", "hello")
...     (root / "set").exists()     # nothing at the destination until the block succeeds
False
>>> sorted(p.name for p in (root / "set").iterdir())
['a.txt']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False, name: str = "out") -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` if the block succeeds.

    An existing empty folder at ``path`` is replaced; any other existing ``path`` is an
    :class:`~histolatent.errors.InputError` (raised on entry, before any work) unless
    ``overwrite``, in which case the old folder is swapped out only once the new one is
    complete. If the block fails, the temporary folder is removed and ``path`` is untouched.
    ``name`` is how the error names the input (``"out"``, ``"--out"``).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        else:
            raise InputError(f"{name}: {str(path)!r} already exists (pass overwrite=True / --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():  # swap: the old folder leaves only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: The name embed/grid.py (and tests/io/test_atomic_paths.py) use for :func:`atomic_folder`.
atomic_dir = atomic_folder


def write_image_atomic(path: str | os.PathLike, image: Any) -> Path:
    """Write an RGB / grey uint8 image to ``path`` atomically, in the format its suffix names.

    PNG when the suffix is not an image format PIL knows; returns the path.
    """
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt)
    return path
