"""The usage record of a job: what was used, measured where it was used."""

from __future__ import annotations

from medcompute.server.jobs.states import Job
from medcompute.server.worker.tasks import TaskResult

__all__ = ["usage_record"]


def usage_record(job: Job, result: TaskResult | None, *, images: int, voxels: int,
                 bytes_in: int, bytes_out: int, fallback: bool = False) -> dict:
    """One job's usage as a plain dict (the fields of the UsageRecord message).

    ``gpu_seconds`` and ``energy_joules`` appear only when they were measured.
    """
    end = job.finished_at or job.created_at
    record = {
        "job_id": job.id,
        "subscriber": job.subscriber,
        "operations": list(job.operations),
        "images": images,
        "voxels": voxels,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "queue_seconds": 0.0,
        "compute_seconds": 0.0,
        "wall_seconds": max(0.0, end - job.created_at),
        "backend": "",
        "device": "",
        "fallback": fallback,
        "state": job.state.value,
        "created_at": job.created_at,
        "finished_at": end,
        "platform_fault": job.platform_fault,
        "destination": "" if job.destination == job.subscriber else job.destination,
    }
    if result is not None:
        start = job.queued_at or job.created_at
        record.update(
            queue_seconds=max(0.0, result.started_at - start),
            compute_seconds=result.compute_seconds,
            backend=result.backend,
            device=result.device,
        )
        if result.gpu_seconds is not None:
            record["gpu_seconds"] = result.gpu_seconds
        if result.energy_joules is not None:
            record["energy_joules"] = result.energy_joules
    return record
