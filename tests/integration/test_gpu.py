"""On a machine with a GPU: the embedded cluster gets a GPU worker and uses it."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.client import Client
from medcompute.server.config import ServerConfig
from medcompute.server.dispatch.cluster import detect_gpus

pytestmark = [
    pytest.mark.gpu, pytest.mark.integration, pytest.mark.timeout(300),
    pytest.mark.skipif(not detect_gpus(), reason="no GPU that NVML reports and CuPy can use"),
]


def test_gpu_worker_runs_cupy_and_matches_cpu(tmp_path, server_thread):
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1, gpu_workers=1)
    vol = np.random.default_rng(0).normal(0, 1, (32, 128, 128)).astype(np.float32)
    with server_thread(config) as server, Client(server.address) as c:
        r = c.process(vol, ["gaussian:sigma=2", "edge"], device="gpu")
    assert r.header.backend == "cupy" and not r.header.fallback.happened
    assert r.header.usage.HasField("gpu_seconds") and r.header.usage.gpu_seconds > 0
    smooth = ndi.gaussian_filter(vol, 2.0, mode="nearest")
    expected = np.sqrt(sum(ndi.sobel(smooth, axis=a, mode="nearest") ** 2 for a in range(3)))
    np.testing.assert_allclose(r.array, expected, rtol=1e-4, atol=1e-4)
