"""UNAVAILABLE from the dispatcher's three ways of running work (dispatch/dispatcher.py: a
small task, one job, a stack of jobs) before its Dask cluster is started: nothing is sent,
no request field is to blame."""

from __future__ import annotations

import asyncio

import pytest

from medcompute.client.ops import parse_op
from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.dispatcher import Dispatcher
from medcompute.server.errors import Unavailable
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.worker.specs import InputSpec, StackSpec, TaskSpec

pytestmark = pytest.mark.timeout(60)

NOT_STARTED = "the Dask cluster is not started"


def _work(tmp_path):
    ops, _ = resolve_pipeline([parse_op("gaussian:sigma=1")], Geometry((8, 8)))
    image = InputSpec(str(tmp_path / "in.raw"), "raw", (8, 8), "float32")
    stack = InputSpec(str(tmp_path / "stack.raw"), "raw", (2, 8, 8), "float32")
    job = TaskSpec(job_id="j1", inputs=(image,), ops=tuple(ops),
                   out_path=str(tmp_path / "out.raw"))
    return job, StackSpec(job_ids=("j1", "j2"), stack=stack, operands=(), ops=tuple(ops))


def test_running_work_before_the_cluster_is_started_is_unavailable(tmp_path):
    dispatcher = Dispatcher(ServerConfig(data_dir=tmp_path))        # never started
    job, stack = _work(tmp_path)
    for attempt in (lambda: dispatcher.call(len, b"abc"),
                    lambda: dispatcher.run(job, voxels=64),
                    lambda: dispatcher.run_stack(stack, voxels=128)):
        with pytest.raises(Unavailable) as info:
            asyncio.run(attempt())
        assert info.value.field is None             # the service's state, no request field's
        assert info.value.message == NOT_STARTED
    assert not (tmp_path / "out.raw").exists()
