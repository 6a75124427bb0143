"""``medcompute serve`` whose jobs, once RUNNING, are held there until it is killed.

    python -m tests.hold_jobs FOLDER serve ...

Sets the job runner's fault-injection seam (``runner.started_hook``) in this process only:
each job, once its RUNNING state is in the catalog, writes a file named by its id into
FOLDER and then waits for an event that is never set. Then runs the command line as
``medcompute`` would."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from medcompute.client.cli import main
from medcompute.server.jobs import runner


def _hold_in(folder: Path):
    async def hook(job) -> None:
        (folder / job.id).touch()
        await asyncio.Event().wait()
    return hook


if __name__ == "__main__":
    runner.started_hook = _hold_in(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
