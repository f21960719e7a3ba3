"""Private paths under the kgrag home, and failed writes as messages with a fix.

The home holds radiology reports (health data), the graph server's password and
trained models, so kgrag keeps it to its owner: directories it creates are 0700,
files 0600 (the command line also runs with umask 077).  A write that fails
because the disk is full, the filesystem is read-only or the path belongs to
someone else becomes a :class:`~kgrag.errors.StorageError` naming the path and
what to do, instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from kgrag.errors import StorageError

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600

#: errno values that mean "this write cannot succeed here" (not a kgrag bug)
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}

# sqlite3 extended result codes (primary code in the low byte)
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 3, 8, 10, 13, 14


def _fix_for(kind: str, path: Path) -> str:
    if kind == "full":
        return f"free disk space on the filesystem holding {path} (df -h {path.parent}), then run the command again"
    if kind == "readonly":
        return (f"{path} is on a read-only filesystem: remount it read-write, or point --home / KGRAG_HOME "
                "at a writable directory")
    return f"make {path} writable by you (ls -ld {path}), or point --home / KGRAG_HOME at a directory you own"


def _kind_of_errno(code: int | None) -> str:
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "full"
    if code == errno.EROFS:
        return "readonly"
    return "denied"


_WHAT = {"full": "the disk is full", "readonly": "the filesystem is read-only", "denied": "permission denied"}


def storage_error(e: BaseException, path: str | os.PathLike[str], action: str) -> StorageError:
    """A :class:`StorageError` for an OSError or sqlite3 error met while ``action`` on ``path``."""
    p = Path(path)
    kind = "denied"
    if isinstance(e, OSError):
        kind = _kind_of_errno(e.errno)
        detail = e.strerror or str(e)
    elif isinstance(e, sqlite3.Error):
        code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
        msg = str(e).lower()
        if code == _SQLITE_FULL or "disk is full" in msg:
            kind = "full"
        elif code == _SQLITE_READONLY or "readonly" in msg or "read-only" in msg:
            kind = "readonly" if _on_readonly_fs(p) else "denied"
        elif code in (_SQLITE_CANTOPEN, _SQLITE_PERM, _SQLITE_IOERR):
            kind = "readonly" if _on_readonly_fs(p) else ("full" if _disk_full(p) else "denied")
        detail = str(e)
    else:
        detail = str(e)
    return StorageError(f"cannot {action} at {p}: {_WHAT[kind]} ({detail})", fix=_fix_for(kind, p))


def is_storage_error(e: BaseException) -> bool:
    """True for errors that a full, read-only or foreign filesystem causes."""
    if isinstance(e, OSError):
        return e.errno in STORAGE_ERRNOS
    if isinstance(e, sqlite3.OperationalError | sqlite3.DatabaseError):
        code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
        msg = str(e).lower()
        return code in (_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM, _SQLITE_IOERR) or any(
            s in msg for s in ("disk is full", "readonly database", "unable to open database", "disk i/o error"))
    return False


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _on_readonly_fs(p: Path) -> bool:
    try:
        return bool(os.statvfs(_existing(p)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _disk_full(p: Path) -> bool:
    try:
        st = os.statvfs(_existing(p))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


@contextmanager
def writing(path: str | os.PathLike[str], action: str) -> Iterator[None]:
    """Turn a storage OSError/sqlite3 error inside the block into a :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise
    except (OSError, sqlite3.Error) as e:
        if is_storage_error(e):
            raise storage_error(e, path, action) from e
        raise


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` where every directory it creates is 0700 (existing ones are left alone;
    ``kgrag doctor`` warns about a home that others can read)."""
    p = Path(path)
    missing: list[Path] = []
    q = p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    with writing(p, "create the directory"):
        for d in reversed(missing):
            try:
                d.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue
            os.chmod(d, DIR_MODE)
    return p


def private_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> IO:
    """Open a file for writing, creating it 0600 (an existing file keeps its mode)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    with writing(path, "write"):
        fd = os.open(path, flags, FILE_MODE)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (a 0600 sibling, then renamed over it)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with writing(p, "write"):
        try:
            with private_open(tmp) as f:
                f.write(text)
            os.replace(tmp, p)
        finally:
            if tmp.exists():
                tmp.unlink()


def check_writable(path: str | os.PathLike[str], action: str) -> None:
    """Fail early (before long work) when ``path``, or the folder it would be made in,
    cannot be written: a read-only filesystem, or no write permission."""
    p = Path(path)
    target = p if p.exists() else _existing(p.parent)
    if os.access(target, os.W_OK):
        return
    code = errno.EROFS if _on_readonly_fs(target) else errno.EACCES
    raise storage_error(OSError(code, os.strerror(code), str(target)), target, action)


def too_open(path: str | os.PathLike[str]) -> int | None:
    """The permission bits of ``path`` when group or others have any access, else None."""
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None
