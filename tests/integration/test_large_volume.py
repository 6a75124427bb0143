"""A volume larger than a worker's memory limit completes, in slabs."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.client import Client
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

LIMIT = 1 << 29


def test_a_volume_larger_than_the_worker_memory_limit_completes(tmp_path, server_thread):
    rng = np.random.default_rng(7)
    vol = rng.integers(0, 250, size=(128, 1024, 1024), dtype=np.uint8)
    assert vol.size * 4 >= LIMIT  # as float32 alone it fills the worker's whole memory limit
    config = ServerConfig(address="127.0.0.1:0", data_dir=tmp_path, workers=1,
                          gpu_workers=0, worker_memory=LIMIT)
    with server_thread(config) as server, Client(server.address, timeout=240) as c:
        r = c.process(vol, ["mean:size=3"], output_dtype="uint8")
        info = server.call(server.running.dispatcher.view())
    assert list(info.memory_limit.values()) == [LIMIT]
    assert r.header.slabs >= 4
    expected = ndi.uniform_filter(vol.astype(np.float32), 3, mode="nearest")
    np.testing.assert_array_equal(r.array, np.clip(np.rint(expected), 0, 255).astype(np.uint8))
