"""``medcompute serve`` as a real process, for the tests that kill it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["Served", "BIN"]

BIN = Path(sys.executable).parent


class Served:
    """``medcompute serve`` in its own process group (the server and its Dask workers)."""

    def __init__(self, data: Path, log: Path, *extra: str, program: tuple[str, ...] = ()):
        """``program``: what runs instead of the installed ``medcompute`` (a test's own
        entry point with a fault-injection seam set), given the same arguments."""
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [*(program or (str(BIN / "medcompute"),)), "serve", "--address", "127.0.0.1:0",
             "--data-dir", str(data), "--workers", "1", "--log-level", "warning", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        line = self.proc.stdout.readline()   # printed once the server accepts calls
        match = re.search(r"medcompute serving on (\S+)", line)
        if match is None:
            self.kill()
            pytest.fail(f"the server did not start:\n{line}\n{log.read_text()}")
        self.address = match.group(1)

    def kill(self) -> None:
        """SIGKILL to the server and every process it started."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._close()

    def stop(self) -> None:
        """SIGINT (a graceful stop), then whatever of its process group is left is killed."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        if _group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._close()

    def _close(self) -> None:
        self.proc.stdout.close()
        self.log.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
