"""What a job ends with: the one result type of the jobs room, below the modules that
make results (process.py, derived.py, batch.py), so that none of them imports another
for it."""

from __future__ import annotations

from dataclasses import dataclass

from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.metering import Usage
from medcompute.server.jobs.operations import ResolvedOp
from medcompute.server.worker.tasks import TaskResult

__all__ = ["JobResult"]


@dataclass
class JobResult:
    """A finished job: what ran, where, its result file and its usage record."""

    job: jobs.Job
    ops: list[ResolvedOp]
    result: TaskResult
    spacing: tuple[float, ...] | None
    output_format: str
    usage: Usage
    fallback_reason: str = ""
    slabs: int = 1
    workers: tuple[str, ...] = ()
    placement: str = ""               # why on CPU though a GPU was asked for (not a fallback)
    stored_image_id: str = ""         # the derived image kept in the store (or reused)
    reused: bool = False              # answered from the store, nothing computed
