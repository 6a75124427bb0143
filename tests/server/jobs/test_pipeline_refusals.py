"""The refusal of recording a job's success when the job had ended meanwhile
(jobs/pipeline.py ``complete``: cancelled elsewhere while it ran), against a real catalog."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from medcompute.proto import wire
from medcompute.proto.v1 import operations_pb2
from medcompute.server.config import ServerConfig
from medcompute.server.errors import FailedPrecondition
from medcompute.server.jobs import states as jobs
from medcompute.server.jobs.catalog import Catalog
from medcompute.server.jobs.metering import usage_record
from medcompute.server.jobs.pipeline import Pipeline
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.results import JobResult
from medcompute.server.storage.spool import ExpectedImage, Spool
from medcompute.server.worker.specs import TaskResult

pytestmark = pytest.mark.timeout(60)

IMAGE = np.arange(64, dtype=np.uint16).reshape(8, 8)


def test_a_success_of_a_job_cancelled_meanwhile_is_not_recorded(tmp_path):
    catalog = Catalog(tmp_path)
    pipeline = Pipeline(ServerConfig(data_dir=tmp_path, min_free_bytes=0), catalog, None,
                        Spool(tmp_path))
    request = ProcessRequest(
        pipeline=(operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(sigma=[1.0])),),
        input=ExpectedImage("input.inline", "raw", IMAGE.nbytes, IMAGE.shape, IMAGE.dtype,
                            crc32=wire.crc32(IMAGE)), device="cpu")

    async def main():
        job = pipeline.new_job(request, subscriber="s")
        await catalog.put_job(job)
        running = jobs.apply(jobs.apply(job, jobs.InputsReceived(11.0)),
                             jobs.Started(12.0, "tcp://w"))
        await catalog.put_job(running)
        # another server process cancels it while it runs
        cancelled = jobs.apply(running, jobs.failure(asyncio.CancelledError(),
                                                     at=12.5, reason="CancelJob"))
        assert await catalog.finish_job(cancelled, None)
        done = jobs.apply(running, jobs.Succeeded(13.0))
        result = TaskResult(str(tmp_path / "out"), (8, 8), "float32", (), 256, 12.0, 13.0,
                            1.0, "numpy", "cpu", "tcp://w")
        usage = usage_record(done, result, images=1, voxels=64, bytes_in=128, bytes_out=256)
        with pytest.raises(FailedPrecondition) as info:
            await pipeline.complete(JobResult(done, [], result, None, "raw", usage))
        assert info.value.field is None             # the job's, not a request field's
        assert info.value.message == (f"job {job.id} ended elsewhere while it ran "
                                      "(cancelled)")
        return await catalog.get_job(job.id), await catalog.usage_for(job.id)

    try:
        ended, usage = asyncio.run(main())
    finally:
        catalog.close()
    assert ended.state is jobs.State.CANCELLED and usage == []
