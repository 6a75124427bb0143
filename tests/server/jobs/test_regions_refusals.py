"""Every refusal of the shared-memory region registry (jobs/regions.py), on real POSIX
shared-memory objects."""

from __future__ import annotations

from multiprocessing import shared_memory

import pytest

from medcompute.server.errors import InvalidArgument, NotFound, ResourceExhausted
from medcompute.server.jobs.regions import RegionRegistry


@pytest.fixture
def obj():
    made = shared_memory.SharedMemory(create=True, size=4096)
    yield made
    made.close()
    try:
        made.unlink()
    except FileNotFoundError:
        pass


@pytest.mark.parametrize("name, size, field, words", [
    ("", 16, "name", "expected the name of a shared-memory object (1 to 255 characters, "
                     "no '/' but a leading one)"),
    ("/a/b", 16, "name", "no '/' but a leading one"),
    ("x" * 256, 16, "name", "1 to 255 characters"),
    (None, 0, "size", "expected the bytes the client will use, more than 0"),
    (None, 4097, "size", "the shared-memory object holds 4096 bytes, fewer than the 4097 given"),
])
def test_registration_refusals(obj, name, size, field, words):
    with pytest.raises(InvalidArgument) as info:
        RegionRegistry().register("st-mary", obj.name if name is None else name, size)
    assert info.value.field == field
    assert words in info.value.message


def test_a_subscriber_over_its_region_limit_is_refused(obj):
    registry = RegionRegistry(per_subscriber=2)
    registry.register("st-mary", obj.name, 16)
    registry.register("st-mary", obj.name, 16)
    registry.register("north-clinic", obj.name, 16)     # another subscriber's count
    with pytest.raises(ResourceExhausted) as info:
        registry.register("st-mary", obj.name, 16)
    assert info.value.field is None                     # the subscriber's, not a field's
    assert "this subscriber has 2 regions registered, the most it may; unregister some first" \
        == info.value.message


def test_an_unknown_region_id_is_refused_and_shown_cut(obj):
    registry = RegionRegistry()
    region = registry.register("st-mary", obj.name, 16)
    with pytest.raises(NotFound) as info:
        registry.get("north-clinic", region.id, "input_region.region_id")
    assert info.value.field == "input_region.region_id"
    assert "of this subscriber (RegisterRegion gives the ids)" in info.value.message
    long_id = "f" * 500
    with pytest.raises(NotFound) as info:
        registry.unregister("st-mary", long_id)
    assert info.value.field == "region_id"
    assert long_id not in info.value.message and "f" * 64 + "'…" in info.value.message


def test_a_region_whose_object_is_gone_is_refused_and_dropped(obj):
    registry = RegionRegistry()
    region = registry.register("st-mary", obj.name, 16)
    obj.unlink()
    with pytest.raises(NotFound) as info:
        registry.get("st-mary", region.id, "output_region.region_id")
    assert info.value.field == "output_region.region_id"
    assert "its shared-memory object no longer exists; the registration is dropped" \
        in info.value.message
    assert region.id not in registry.regions
