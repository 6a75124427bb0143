"""The placement's refusal of device=gpu on a cluster without a GPU worker
(dispatch/placement.py)."""

from __future__ import annotations

import pytest

from medcompute.server.dispatch.placement import WorkerView, require_gpu
from medcompute.server.errors import FailedPrecondition


def test_gpu_without_a_gpu_worker_is_refused_unless_fallback_is_allowed():
    cpu_only = WorkerView(cpu=("tcp://10.0.0.5:40001", "tcp://10.0.0.6:40001"))
    with pytest.raises(FailedPrecondition) as info:
        require_gpu(cpu_only, allow_fallback=False)
    assert info.value.field == "header.device"
    assert info.value.message == ("device=gpu was asked for but this cluster has no GPU "
                                  "worker; use device=auto or device=cpu, or allow fallback "
                                  "to CPU")
    require_gpu(cpu_only, allow_fallback=True)
    require_gpu(WorkerView(gpu=("tcp://10.0.0.7:40001",)), allow_fallback=False)
