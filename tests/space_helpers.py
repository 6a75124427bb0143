"""A real small filesystem for the storage-fault tests: a tmpfs mounted by the test.

Mounting needs root (CAP_SYS_ADMIN); where it is not permitted the tests that need a
real full disk are skipped with that reason (the reserve's own logic is tested with a
fake statvfs, which needs no mount).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest

MIB = 1 << 20


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int):
    """Mount a ``size_mb`` MiB tmpfs on ``path`` for the block; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                               str(path)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("needs a real small filesystem: this machine has no `mount` command")
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
        pytest.skip("needs a real small filesystem: mounting a tmpfs was not permitted here "
                    f"(root with CAP_SYS_ADMIN is needed): {reason}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


class FakeStatvfs:
    """A fake of ``os.statvfs``: a filesystem of ``total`` bytes with ``free`` available
    (for the reserve's arithmetic, and where no real small filesystem can be mounted)."""

    def __init__(self, total: int, free: int):
        self.total, self.free = total, free
        self.asked: list[str] = []

    def __call__(self, path: str):
        self.asked.append(path)
        return os.statvfs_result((4096, 4096, self.total // 4096, self.free // 4096,
                                  self.free // 4096, 0, 0, 0, 0, 255))


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int = 0) -> Path:
    """Another process's file taking the filesystem's space until ``leave`` bytes are free
    (0: until the disk is full, ENOSPC)."""
    filler = path / f"filler-{len(list(path.glob('filler-*')))}"
    with open(filler, "wb", buffering=0) as f:
        block = 1 * MIB
        while block >= 4096:
            room = free_bytes(path) - leave
            if leave and room < block:
                if room < 4096:
                    break
                block = max(4096, room // 4096 * 4096)
            try:
                f.write(bytes(block))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                block //= 2
    return filler
