"""The usage record of a job (jobs/metering.py): why a job meant for a GPU ran on CPU."""

from __future__ import annotations

from medcompute.proto.v1 import processing_pb2
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.metering import usage_record
from medcompute.server.worker.specs import TaskResult


def _done() -> tuple[jobs.Job, TaskResult]:
    job = jobs.new_job(subscriber="s", operations=["gaussian"], inputs=["inline:256"],
                       device="gpu", created_at=10.0)
    job = jobs.apply(jobs.apply(job, jobs.InputsReceived(11.0)), jobs.Started(12.0, "tcp://w"))
    result = TaskResult("out", (8, 8), "float32", (), 256, 12.0, 13.0, 1.0, "numpy", "cpu",
                        "tcp://w")
    return jobs.apply(job, jobs.Succeeded(13.0)), result


def test_a_cpu_rerun_of_a_gpu_job_says_why_in_its_usage_record():
    job, result = _done()
    reason = "GPU failed: the GPU worker tcp://g was lost while it ran the job"
    usage = usage_record(job, result, images=1, voxels=64, bytes_in=256, bytes_out=256,
                         fallback_reason=reason)
    record = usage.as_dict()
    assert record["fallback"] is True and record["fallback_reason"] == reason
    assert "gpu_seconds" not in record and record["compute_seconds"] == 1.0   # the CPU run
    message = processing_pb2.UsageRecord(**record)
    assert message.fallback and message.fallback_reason == reason


def test_a_job_without_fallback_has_no_reason_in_its_record():
    job, result = _done()
    record = usage_record(job, result, images=1, voxels=64, bytes_in=256,
                          bytes_out=256).as_dict()
    assert record["fallback"] is False and "fallback_reason" not in record
