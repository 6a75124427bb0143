"""The usage record of a job: what was used, measured where it was used."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from medcompute.server.jobs.states import Job
from medcompute.server.worker.tasks import TaskResult

__all__ = ["Usage", "usage_record"]


@dataclass(frozen=True)
class Usage:
    """One job's usage (the fields of the UsageRecord message).

    ``gpu_seconds``, ``energy_joules``, ``transfer_seconds`` and ``compile_seconds`` are
    None when they were not measured: absent from :meth:`as_dict`, never zero. Billing
    charges ``gpu_seconds`` (the kernels); transfers and compiles are reported apart.
    """

    job_id: str
    subscriber: str
    operations: tuple[str, ...]
    images: int
    voxels: int
    bytes_in: int
    bytes_out: int
    queue_seconds: float
    compute_seconds: float
    wall_seconds: float
    backend: str
    device: str
    fallback: bool
    state: str
    created_at: float
    finished_at: float
    platform_fault: bool
    destination: str
    gpu_seconds: float | None = None
    energy_joules: float | None = None
    #: One line per use of a software package's operation: package, version, sha256,
    #: operation, fee (absent from :meth:`as_dict` when the job used none).
    software: tuple[dict, ...] = ()
    transfer_seconds: float | None = None
    compile_seconds: float | None = None
    #: On a GPU without ``energy_joules``: why it is absent (None elsewhere).
    energy_absent_reason: str | None = None
    #: Where ``fallback``: why the job ran on CPU ("" otherwise: absent from as_dict).
    fallback_reason: str = ""

    def as_dict(self) -> dict:
        """The record as the catalog keeps it and the metrics count it (a plain dict,
        without the figures that were not measured)."""
        out = dataclasses.asdict(self)
        out["operations"] = list(self.operations)
        out["software"] = [dict(line) for line in self.software]
        if not out["software"]:
            del out["software"]
        if not out["fallback_reason"]:
            del out["fallback_reason"]
        for name in ("gpu_seconds", "energy_joules", "transfer_seconds", "compile_seconds",
                     "energy_absent_reason"):
            if out[name] is None:
                del out[name]
        return out


def software_lines(ops: Sequence) -> tuple[dict, ...]:
    """The usage lines of the software packages' operations among resolved ``ops``."""
    return tuple({"package": run.name, "version": run.version, "sha256": run.sha256,
                  "operation": run.operation, "fee": run.fee}
                 for run in (op.args[0] for op in ops if op.kernel == "package"))


def usage_record(job: Job, result: TaskResult | None, *, images: int, voxels: int,
                 bytes_in: int, bytes_out: int, fallback: bool = False,
                 ops: Sequence = (), fallback_reason: str = "") -> Usage:
    """One job's usage; ``result`` None for a job that did not run to its end; ``ops``:
    the resolved operations of a job that ran them (their software packages' uses);
    ``fallback_reason``: why a job meant for a GPU ran on CPU (``fallback`` then too)."""
    end = job.finished_at or job.created_at
    measured = {}
    if result is not None:
        start = job.queued_at or job.created_at
        measured = dict(queue_seconds=max(0.0, result.started_at - start),
                        compute_seconds=result.compute_seconds, backend=result.backend,
                        device=result.device, gpu_seconds=result.gpu_seconds,
                        energy_joules=result.energy_joules,
                        transfer_seconds=result.transfer_seconds,
                        compile_seconds=result.compile_seconds,
                        energy_absent_reason=result.energy_absent or None)
    return Usage(**{
        "job_id": job.id,
        "subscriber": job.subscriber,
        "operations": tuple(job.operations),
        "images": images,
        "voxels": voxels,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "queue_seconds": 0.0,
        "compute_seconds": 0.0,
        "wall_seconds": max(0.0, end - job.created_at),
        "backend": "",
        "device": "",
        "fallback": fallback or bool(fallback_reason),
        "fallback_reason": fallback_reason,
        "state": job.state.value,
        "created_at": job.created_at,
        "finished_at": end,
        "platform_fault": job.platform_fault,
        "destination": "" if job.destination == job.subscriber else job.destination,
        "software": software_lines(ops) if result is not None else (),
        **measured,
    })
