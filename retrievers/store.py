"""Publishing an index folder atomically, recovering an interrupted swap, and cleaning up.

An index path is a symbolic link to a hidden, complete version folder beside it::

    my-index            -> .my-index.v-3f2a9c01e4b7    (the live version)
    .my-index.v-3f2a…/      manifest.json, chunks.jsonl, ...
    .my-index.lock          held while a writer (or a recovery) changes any of this

:func:`publish` writes a new version folder in full (and fsyncs it), points a fresh link at it
and swaps that link onto the index path with one :func:`os.replace` — a single atomic rename —
so at every instant the path names either the old complete index or the new one. Older
versions and the temporaries of crashed writers are removed afterwards, under the lock.

An index path that is still a plain folder (written by an earlier ragzip, or copied) is read as
it is; the first :func:`publish` onto it moves it aside as a version and links the path to the
new one. That move and the removal of an empty folder leave a moment without anything at the
path; :func:`recover` (run by loading and by the next publish) restores the newest complete
version, so no crash loses an index. Linux and macOS; a filesystem without symbolic links is
reported as an error before anything is changed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

VERSION_TAG = ".v-"
LINK_TAG = ".link-"
STALE_TAGS = (".tmp-", ".old-", LINK_TAG)
"""Temporaries a crashed writer can leave (``.tmp-``/``.old-`` come from earlier releases)."""


def _sibling(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name}{tag}{uuid.uuid4().hex[:12]}"


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}{tag}"
    if not target.parent.is_dir():
        return []
    found = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    return sorted(found, key=lambda p: p.lstat().st_mtime_ns, reverse=True)


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold the index's lock file (``.NAME.lock`` beside it) for the block."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries to disk where the platform allows it."""
    with contextlib.suppress(OSError):  # not every platform/filesystem can fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(
    target: Path, write: Callable[[Path], None], *, is_complete: Callable[[Path], bool]
) -> None:
    """Write a new version with ``write(folder)`` and make ``target`` point to it atomically.

    Args:
        target: The index path (a link, a plain folder, an empty folder, or nothing yet).
        write: Fills the fresh, empty version folder; must fsync what it writes.
        is_complete: Whether a folder holds a complete index (used for recovery and cleanup).

    Raises:
        OSError: From ``write`` or the filesystem; the old index is untouched then and the new
            version folder is removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target):
        recover(target, is_complete, _locked=True)
        version = _sibling(target, VERSION_TAG)
        version.mkdir()
        try:
            write(version)
            fsync_dir(version)
            _point(target, version)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        clean(target)


def _point(target: Path, version: Path) -> None:
    link = _sibling(target, LINK_TAG)
    try:
        os.symlink(version.name, link)
    except OSError as exc:  # pragma: no cover - filesystems without symbolic links
        msg = f"cannot create a symbolic link in {str(target.parent)!r}: {exc}"
        raise OSError(errno.EPERM, msg) from exc
    fsync_dir(target.parent)
    if target.is_dir() and not target.is_symlink():
        if any(target.iterdir()):  # a plain index folder: keep it as a version until swapped
            os.replace(target, _sibling(target, VERSION_TAG))
        else:
            target.rmdir()
    os.replace(link, target)  # the one atomic step: the path now names the new version
    fsync_dir(target.parent)


def recover(target: Path, is_complete: Callable[[Path], bool], *, _locked: bool = False) -> bool:
    """Put an index back at ``target`` if a crash left nothing (or a dangling link) there.

    The newest complete candidate wins: a link a writer had made but not yet swapped in, then
    version folders, then folders earlier releases moved aside (``.NAME.old-*``).

    Returns:
        Whether an index was restored.
    """
    if target.exists() or not target.parent.is_dir():
        return False
    if not _locked:
        with locked(target):
            return recover(target, is_complete, _locked=True)
    for link in _siblings(target, LINK_TAG):
        if link.is_symlink() and link.exists() and is_complete(link.resolve()):
            if target.is_symlink():
                target.unlink()
            os.replace(link, target)
            fsync_dir(target.parent)
            logger.warning("recovered the index at %s from an interrupted replacement", target)
            return True
    for tag in (VERSION_TAG, ".old-"):
        for folder in _siblings(target, tag):
            if folder.is_dir() and not folder.is_symlink() and is_complete(folder):
                if target.is_symlink():
                    target.unlink()
                version = folder if tag == VERSION_TAG else _sibling(target, VERSION_TAG)
                if version != folder:
                    os.replace(folder, version)
                _point(target, version)
                logger.warning("recovered the index at %s from %s", target, folder.name)
                return True
    return False


def clean(target: Path) -> None:
    """Remove temporaries of crashed writers and versions ``target`` no longer points to.

    Only runs when ``target`` names a readable index, so nothing that might be the last copy
    is ever removed. Call it holding :func:`locked`.
    """
    if not target.exists():
        return
    live = target.resolve()
    for tag in (VERSION_TAG, *STALE_TAGS):
        for path in _siblings(target, tag):
            if path.resolve() == live and not path.is_symlink():
                continue
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)
