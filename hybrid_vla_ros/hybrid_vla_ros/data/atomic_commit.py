"""Crash-safe commit of a folder: build its next version beside it, swap the two in one step.

A commit builds the next version of ``DIR`` in a sibling ``DIR.commit`` (:func:`link_tree`: hard
links for the unchanged files; :func:`write_file` / :func:`write_parquet` replace a file without
writing through its link) and swaps the two folders with :func:`swap_in`, one
``renameat2(RENAME_EXCHANGE)``. An interrupted commit (Ctrl-C, kill -9) leaves the previous
version in place and a stale sibling that :func:`recover` removes before the next commit.
"""
import ctypes
import errno
import os
import shutil


def write_parquet(path: str, table) -> None:
    import pyarrow.parquet as pq
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)  # a hard link to the previous version: never write through it
    pq.write_table(table, path)


def write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, 'wb') as f:
        f.write(data)


def _exchange(a: str, b: str) -> None:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, 'renameat2', None)
    if fn is None:
        raise OSError(errno.ENOSYS, 'renameat2 is not available')
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def swap_in(staging: str, root: str) -> None:
    """Make ``staging`` the new ``root``; the previous version ends up at ``staging``."""
    if not os.path.exists(root):
        os.rename(staging, root)
        return
    try:
        _exchange(staging, root)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise
        # No RENAME_EXCHANGE on this file system: two renames; the writer's start-up
        # recovery (:func:`recover`) puts ``root`` back if a kill lands between them.
        old = root + '.previous'
        os.rename(root, old)
        os.rename(staging, root)
        os.rename(old, staging)


def recover(root: str) -> None:
    old, staging = root + '.previous', root + '.commit'
    if os.path.isdir(old):
        if not os.path.exists(root):
            os.rename(old, root)
        else:
            shutil.rmtree(old)
    if os.path.isdir(staging):
        shutil.rmtree(staging)


def link_tree(src: str, dst: str) -> None:
    for d, _, files in os.walk(src):
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            os.link(os.path.join(d, f), os.path.join(dst, rel, f))
