"""The refusals of a worker reading or writing a client's shared-memory object
(worker/shm.py) that changed after the call was accepted, on real objects."""

from __future__ import annotations

import os
from multiprocessing import shared_memory

import numpy as np
import pytest

from medcompute.server.errors import FailedPrecondition
from medcompute.server.worker import shm


@pytest.fixture
def obj():
    made = shared_memory.SharedMemory(create=True, size=4096)
    yield made
    made.close()
    try:
        made.unlink()
    except FileNotFoundError:
        pass


def test_an_object_unlinked_by_its_client_is_refused(obj):
    obj.unlink()
    with pytest.raises(FailedPrecondition) as info:
        shm.read(obj.name, 0, (16,), np.uint8)
    assert info.value.field == "input_region"
    assert "the region's shared-memory object no longer exists (its client unlinked it)" \
        == info.value.message


def test_an_object_its_client_shrank_is_refused(obj):
    os.truncate(os.path.join(shm.SHM_DIR, obj.name.lstrip("/")), 1024)
    with pytest.raises(FailedPrecondition) as info:
        shm.write(obj.name, 1000, np.zeros(64, np.uint8))
    assert info.value.field == "output_region"
    assert "the region's shared-memory object holds 1024 bytes now, fewer than the 1064 this " \
        "call needs (its client shrank it)" == info.value.message
