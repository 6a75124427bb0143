"""What a worker runs for a job: failures reach the server as errors it can report."""

import numpy as np
import pytest

from medcompute.server.errors import Internal
from medcompute.server.worker import tasks


class Panic(BaseException):
    """As a Rust library's panic: a BaseException that is not an Exception."""


def test_a_panic_in_a_task_is_reported_not_lost(tmp_path, monkeypatch):
    # Dask delivers only Exceptions to the client; a BaseException would leave the call
    # waiting for a result that never comes.
    path = tmp_path / "in.raw"
    np.zeros((2, 3), np.float32).tofile(path)
    spec = tasks.InputSpec(str(path), "raw", (2, 3), "<f4")

    def panic(spec):
        raise Panic("index out of bounds")

    monkeypatch.setattr(tasks, "load_image", panic)
    with pytest.raises(Internal, match="Panic"):
        tasks.materialize(spec, str(tmp_path / "out.raw"))
    job = tasks.TaskSpec(job_id="j", inputs=(spec,), ops=(), out_path=str(tmp_path / "o"))
    [error] = tasks.run_batch([job])
    assert isinstance(error, Internal)

