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


def test_rows_of_an_array_are_read_without_the_rest(region):
    array = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    shm.write(region.name, 256, array)
    for axis, (lo, hi) in [(0, (1, 4)), (1, (2, 5)), (2, (0, 1))]:
        got = shm.read_rows(region.name, 256, array.shape, np.int16, axis, lo, hi)
        index = [slice(None)] * 3
        index[axis] = slice(lo, hi)
        assert got.flags.owndata and got.flags.c_contiguous     # a copy, not a view
        assert np.array_equal(got, array[tuple(index)])
