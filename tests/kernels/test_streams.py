"""The double-buffered slab loop (kernels/streams.py) on the CPU's stream stand-in: the
same results bit for bit as one slab at a time, results stored in slab order, and a
download that is there only once its event was waited for."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute import kernels
from medcompute.kernels.streams import HostStream, run_slabs

SLABS = [np.random.default_rng(k).normal(100, 20, (6, 24, 24)).astype(np.float32)
         for k in range(5)]


def _run(overlap: bool, count: int = len(SLABS)) -> tuple[list, list]:
    backend = kernels.cpu_backend()
    stored, times = [], []

    def compute(device):
        return kernels.saturating_cast(kernels.gaussian(device[0], (1.5, 1.0, 1.0)),
                                       np.dtype(np.int16))

    def store(k, out, t):
        stored.append((k, out.copy()))
        times.append(t)
    run_slabs(backend, count, lambda k: [SLABS[k]], compute, store, overlap=overlap)
    return stored, times


@pytest.mark.parametrize("count", [1, 2, 5])
def test_overlapped_slabs_equal_one_slab_at_a_time_bit_for_bit(count):
    overlapped, times = _run(True, count)
    sequential, _ = _run(False, count)
    assert [k for k, _ in overlapped] == list(range(count))        # stored in slab order
    for (_, a), (_, b), slab in zip(overlapped, sequential, SLABS):
        assert a.dtype == np.int16 and a.tobytes() == b.tobytes()
        expected = np.clip(np.rint(ndi.gaussian_filter(slab, (1.5, 1.0, 1.0),
                                                       mode="nearest")), -32768, 32767)
        np.testing.assert_array_equal(a, expected.astype(np.int16))
    assert all(t.upload >= 0 and t.kernel >= 0 and t.download >= 0 for t in times)


def test_a_download_is_in_its_buffer_only_once_its_event_was_waited_for():
    backend = kernels.cpu_backend()
    stream = backend.new_stream()
    assert isinstance(stream, HostStream)
    device = backend.upload(np.arange(6, dtype=np.float32), stream)
    out = np.zeros(6, np.float32)
    before = backend.record(stream)
    backend.download(device, stream, out)
    after = backend.record(stream)
    assert not out.any()                         # queued, not done
    backend.wait(before)
    assert not out.any()                         # the event before the copy: still not
    backend.wait(after)
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32))
    assert backend.elapsed(before, after) >= 0


@pytest.mark.gpu
def test_overlapped_slabs_on_a_gpu_equal_one_slab_at_a_time_bit_for_bit():
    try:
        backend = kernels.gpu_backend(0)
    except kernels.BackendUnavailable as exc:
        pytest.skip(str(exc))
    results = {}
    for overlap in (True, False):
        stored = []
        run_slabs(backend, len(SLABS), lambda k: [SLABS[k]],
                  lambda device: kernels.gaussian(device[0], (1.5, 1.0, 1.0)),
                  lambda k, out, t, stored=stored: stored.append(out.copy()),
                  overlap=overlap)
        results[overlap] = stored
    for a, b, slab in zip(results[True], results[False], SLABS):
        assert a.tobytes() == b.tobytes()
        np.testing.assert_allclose(a, ndi.gaussian_filter(slab, (1.5, 1.0, 1.0),
                                                          mode="nearest"), rtol=1e-5, atol=1e-4)
