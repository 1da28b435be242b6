"""Files written so that a crash never leaves half of one, one writer per run folder, and bounded reads of
JSON: what every command needs before (or without) importing PyTorch."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

from .errors import CheckpointError
from .runfiles import LOCK


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed to disk
    (fsync), and the file is renamed over ``path`` (atomic on POSIX).
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a read-only or missing place: nothing was written
        raise CheckpointError(f"cannot write {path} ({exc.strerror or exc}); choose a folder you can write to.") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; the user's umask decides, as for open()
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the old file, if any, is untouched
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path} ({exc.strerror or exc}); the previous version, if any, is intact. Free some space or choose another folder.") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


_held: set[Path] = set()  # run folders this process has locked


@contextlib.contextmanager
def lock_run(run: Path):
    """Hold an exclusive lock on the run folder ``run`` (created if needed) while the block runs.

    A second process that writes into the same folder at the same time gets a
    :class:`CheckpointError` naming the holder, instead of both runs mixing
    their files. Re-entrant within one process; released when the process
    ends, however it ends. Where ``fcntl`` is missing (Windows) it does nothing.
    """
    run = Path(run).resolve()
    if fcntl is None or run in _held:  # no locks here, or this process holds it already (the outer block releases it)
        yield
        return
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~_umask())
    except OSError as exc:
        if (run / LOCK).is_symlink():  # never written through: the link could lead anywhere outside the run
            raise CheckpointError(f"{run / LOCK} is a symbolic link, not aekit's lock file; remove it (aekit writes nothing outside the run).") from None
        raise CheckpointError(f"cannot write in the run folder {run} ({exc.strerror or exc}); choose a folder you can write to.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise CheckpointError(f"{run} is being written by another aekit process (pid {holder}); wait for it to finish, or choose another --out.") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held.add(run)
    try:
        yield
    finally:
        _held.discard(run)
        os.close(fd)  # closing releases the lock


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that a write killed mid-way left behind (the real files are intact)."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()] if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


MAX_JSON = 64 * 2**20  # a run's JSON files are small; a larger one is not aekit's
MAX_FILE = 256 * 2**20  # nor is a metrics table or picture of a run larger than this


def read_bounded(path: Path, limit: int = MAX_FILE, missing: str = "") -> bytes:
    """The bytes of a file of a run, read no further than ``limit``: a folder, a device or a pipe (a link to
    /dev/zero) and a file larger than that are refused with a :class:`CheckpointError`, never read until memory
    runs out."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CheckpointError(f"{path} is not a regular file (a folder, device or pipe); aekit reads only files it wrote: restore it, or remove it.")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found{': ' + missing if missing else ''}.") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror or exc}).") from None
    if len(data) > limit:
        raise CheckpointError(f"{path} is larger than {limit // 2**20} MiB: not a file aekit wrote.")
    return data


def read_json(path: Path, what: str) -> Any:
    text = read_bounded(path, MAX_JSON, what)
    try:
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or a huge integer
        raise CheckpointError(f"{path} is not valid JSON ({type(exc).__name__}: {str(exc)[:100]}); the file is corrupt.") from None
