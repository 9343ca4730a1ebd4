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
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from histolatent.errors import InputError


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _tag() -> str:
    """``<host>-<pid>``: who writes a temporary file, so that a later run can tell a dead writer's."""
    return f"{_host()}-{os.getpid()}"


def temp_prefix(path: str | os.PathLike) -> str:
    """The prefix of this process's temporaries for ``path`` (``.<name>.<host>-<pid>.``), for
    writers that make their own (a scratch folder) and want :func:`remove_stale_temps` to find
    them once their process is dead; end the name with ``.tmp``."""
    return f".{Path(path).name}.{_tag()}."


_prefix = temp_prefix


_TEMP = re.compile(r"^\..+\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[^.]+\.(tmp.*|old)$")
#: a temporary of another host (or an older naming) is removed only when this old, in seconds
STALE_AFTER_S = 24 * 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders that dead writers left in ``folder``; returns them.

    A temporary (see the module docstring) is stale when its writer's process no longer runs
    on this host, or, written on another host, when it is older than :data:`STALE_AFTER_S`.
    Temporaries of live writers are never touched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    host = _host()
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m is None:
            continue
        if m["host"] == host:
            stale = not _alive(int(m["pid"]))
        else:
            with contextlib.suppress(OSError):
                stale = time.time() - p.lstat().st_mtime > STALE_AFTER_S
        if stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p)
    return removed


def check_output(path: str | os.PathLike, *, name: str = "out", kind: str = "file", overwrite: bool = True) -> Path:
    """Check, before any work, that ``path`` can be written; returns it as a :class:`Path`.

    Parameters
    ----------
    path : path-like
        The output: a file (``kind="file"``) or a folder (``kind="folder"``).
    name : str
        How errors name the input (``"--out"``, ``"OUT"``).
    kind : str
        ``"file"`` or ``"folder"``: a folder where a file is expected (or the reverse) is an error.
    overwrite : bool
        Whether an existing output may be replaced; False makes it an error that says how.

    Raises
    ------
    InputError
        The output is of the wrong kind, exists (without ``overwrite``), lies below a file, or
        its folder is not writable. Stale temporaries of dead writers in its folder are
        removed (:func:`remove_stale_temps`).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> check_output(root / "new" / "a.csv").name
    'a.csv'
    >>> check_output(root, name="--out")
    Traceback (most recent call last):
    ...
    histolatent.errors.InputError: --out: '...' is a folder; expected a file name
    """
    if kind not in ("file", "folder"):
        raise InputError(f"check_output: kind must be 'file' or 'folder', got {kind!r}")
    path = Path(path)
    if path.is_dir() and kind == "file":
        raise InputError(f"{name}: {str(path)!r} is a folder; expected a file name")
    if path.exists() and not path.is_dir() and kind == "folder":
        raise InputError(f"{name}: {str(path)!r} is a file; expected a folder")
    if path.exists() and not overwrite and not (path.is_dir() and not any(path.iterdir())):
        raise InputError(f"{name}: {str(path)!r} already exists (pass --overwrite / overwrite=True to replace it)")
    parent = path.parent if kind == "file" or not path.is_dir() else path
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{name}: cannot create {str(path)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{name}: cannot write {str(path)!r}: the folder {str(probe)!r} is not writable")
    if probe == parent:
        remove_stale_temps(parent)
        if kind == "folder" and path.is_dir():
            remove_stale_temps(path)
    return path


def current_umask() -> int:
    """The process's umask (from ``/proc/self/status`` where Linux gives it; else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(tmp: str | os.PathLike, *, folder: bool = False) -> None:
    """Give a temporary file or folder the mode ``open()`` / ``mkdir()`` would have given it.

    ``tempfile`` makes files 0600 and folders 0700 whatever the umask, and a rename keeps
    the mode: without this, results on a shared cluster would be unreadable to colleagues.
    """
    os.chmod(tmp, (0o777 if folder else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file lives in the same folder so that :func:`os.replace` is atomic.
    ``suffix`` keeps an extension on the temporary name for writers that dispatch on it
    (defaults to the suffix of ``path``).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder; expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    _plain_mode(tmp)
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
            fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=f".tmp{path.suffix}", dir=path.parent)
            os.close(fd)
            _plain_mode(tmp)
            tmps.append(Path(tmp))
        yield tmps
        moved: list[tuple[Path, Path | None]] = []
        try:
            for tmp, path in zip(tmps, targets, strict=True):
                backup = None
                if path.exists():
                    backup = path.with_name(f"{_prefix(path)}backup.old")
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
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    _plain_mode(tmp, folder=True)
    try:
        yield tmp
        if path.exists():  # swap: the old folder leaves only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".old", dir=path.parent))
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
