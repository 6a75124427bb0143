"""Shared-memory objects read and written by name (worker/shm.py), on real objects."""

from __future__ import annotations

from multiprocessing import shared_memory

import numpy as np
import pytest

from medcompute.server.errors import FailedPrecondition
from medcompute.server.worker import shm


@pytest.fixture
def region():
    made = shared_memory.SharedMemory(create=True, size=1 << 14)
    yield made
    made.close()
    made.unlink()


def test_an_array_written_by_name_reads_back_at_its_offset(region):
    array = np.arange(60, dtype=np.int16).reshape(6, 10)
    shm.write(region.name, 512, array)
    got = shm.read(region.name, 512, (6, 10), np.int16)
    assert got.tobytes() == array.tobytes()
    assert bytes(region.buf[512:512 + array.nbytes]) == array.tobytes()
    got[...] = 0                                  # a copy: the object is untouched
    assert bytes(region.buf[512:512 + array.nbytes]) == array.tobytes()


def test_size_is_the_objects_or_none_when_it_does_not_exist(region):
    assert shm.size(region.name) == region.size
    assert shm.size("/" + region.name) == region.size
    assert shm.size("medcompute-no-such-object") is None


@pytest.mark.parametrize("name, ok", [
    ("psm_1234", True), ("/psm_1234", True), ("", False), ("a/b", False), ("..", False),
    ("x" * 256, False),
])
def test_valid_names_are_those_shm_open_takes(name, ok):
    assert shm.valid_name(name) is ok


def test_an_object_gone_or_shrunk_is_a_failed_precondition_naming_the_region(region):
    with pytest.raises(FailedPrecondition) as exc:
        shm.read(region.name, region.size - 4, (4,), np.int16)
    assert exc.value.field == "input_region" and "fewer than" in exc.value.message
    with pytest.raises(FailedPrecondition) as exc:
        shm.write("medcompute-no-such-object", 0, np.zeros(4, np.int16))
    assert exc.value.field == "output_region" and "no longer exists" in exc.value.message


def test_a_mapping_is_kept_between_calls_and_follows_a_new_object_of_the_same_name():
    made = shared_memory.SharedMemory(create=True, size=1 << 14)
    name = made.name
    try:
        shm.write(name, 0, np.full(8, 1, np.int32))
        kept = shm._kept[name]
        assert shm.read(name, 0, (8,), np.int32).tolist() == [1] * 8
        assert shm._kept[name] is kept                 # the same mapping, pages mapped
        made.close()
        made.unlink()
        # Another object under that name: read through a new mapping, not the old pages.
        made = shared_memory.SharedMemory(name=name, create=True, size=1 << 14)
        made.buf[:32] = np.full(8, 2, np.int32).tobytes()
        assert shm.read(name, 0, (8,), np.int32).tolist() == [2] * 8
        assert shm._kept[name] is not kept and kept.map.closed
    finally:
        made.close()
        made.unlink()
    # Gone: the next call (or the sweeper) closes its mapping, freeing the object's memory.
    last = shm._kept[name]
    with shm._lock:
        shm._drop_stale(0.0)
    assert name not in shm._kept and last.map.closed


def test_an_idle_mapping_is_closed_and_at_most_a_few_are_kept():
    made = [shared_memory.SharedMemory(create=True, size=4096) for _ in range(shm._KEEP + 3)]
    try:
        for m in made:
            shm.write(m.name, 0, np.zeros(4, np.int32))
        assert len([m for m in made if m.name in shm._kept]) <= shm._KEEP
        kept = shm._kept[made[-1].name]
        with shm._lock:
            shm._drop_stale(kept.used + shm._IDLE_SECONDS + 1)
        assert made[-1].name not in shm._kept and kept.map.closed
    finally:
        for m in made:
            m.close()
            m.unlink()


def test_an_object_over_the_byte_budget_is_mapped_for_the_call_only(monkeypatch):
    # In a Dask worker the budget is a share of its memory limit: the pages of a kept
    # mapping count in the resident memory its nanny watches.
    monkeypatch.setattr(shm, "_budget_bytes", [8192])
    small = shared_memory.SharedMemory(create=True, size=8192)
    large = shared_memory.SharedMemory(create=True, size=1 << 16)
    try:
        shm.write(large.name, 0, np.arange(16, dtype=np.int32))
        assert large.name not in shm._kept
        assert shm.read(large.name, 0, (16,), np.int32).tolist() == list(range(16))
        shm.write(small.name, 0, np.arange(4, dtype=np.int32))
        assert small.name in shm._kept
    finally:
        for m in (small, large):
            m.close()
            m.unlink()


def test_rows_of_an_array_are_read_without_the_rest(region):
    array = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    shm.write(region.name, 256, array)
    for axis, (lo, hi) in [(0, (1, 4)), (1, (2, 5)), (2, (0, 1))]:
        got = shm.read_rows(region.name, 256, array.shape, np.int16, axis, lo, hi)
        index = [slice(None)] * 3
        index[axis] = slice(lo, hi)
        assert got.flags.owndata and got.flags.c_contiguous     # a copy, not a view
        assert np.array_equal(got, array[tuple(index)])
