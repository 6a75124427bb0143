"""The registry of same-host clients' shared-memory regions (jobs/regions.py) and the
checks of a request that names them (validate.check_regions), on real objects."""

from __future__ import annotations

import dataclasses
from multiprocessing import shared_memory

import numpy as np
import pytest

from medcompute.proto.v1 import operations_pb2
from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from medcompute.server.jobs import validate
from medcompute.server.jobs.regions import NOT_ON_THIS_HOST, RegionRegistry
from medcompute.server.jobs.requests import ProcessRequest, RegionRef
from medcompute.server.storage.spool import ExpectedImage

GAUSSIAN = operations_pb2.Operation(gaussian=operations_pb2.GaussianOp(sigma=[1.0]))
MIP = operations_pb2.Operation(project=operations_pb2.ProjectOp(kind=operations_pb2.PROJECTION_MAX))


@pytest.fixture
def obj():
    made = shared_memory.SharedMemory(create=True, size=1 << 14)
    yield made
    made.close()
    try:
        made.unlink()
    except FileNotFoundError:
        pass


def test_a_region_belongs_to_the_subscriber_that_registered_it(obj):
    registry = RegionRegistry()
    region = registry.register("st-mary", obj.name, 4096)
    assert registry.get("st-mary", region.id, "f").name == obj.name
    with pytest.raises(NotFound) as exc:
        registry.get("north-clinic", region.id, "input_region.region_id")
    assert exc.value.field == "input_region.region_id"
    with pytest.raises(NotFound):
        registry.unregister("north-clinic", region.id)
    with pytest.raises(NotFound):
        registry.get("st-mary", "no-such-id", "f")
    registry.unregister("st-mary", region.id)
    assert registry.regions == {}


def test_registration_checks_the_object_on_this_host(obj):
    registry = RegionRegistry()
    with pytest.raises(FailedPrecondition) as exc:
        registry.register("s", "medcompute-no-such-object", 16)
    assert exc.value.message == NOT_ON_THIS_HOST and exc.value.field == "name"
    with pytest.raises(InvalidArgument) as exc:
        registry.register("s", obj.name, obj.size + 1)
    assert exc.value.field == "size"
    for name, size, field in [("a/b", 16, "name"), (obj.name, 0, "size")]:
        with pytest.raises(InvalidArgument) as exc:
            registry.register("s", name, size)
        assert exc.value.field == field


def test_a_region_whose_object_is_gone_is_dropped_on_use_and_by_the_sweep(obj):
    registry = RegionRegistry()
    used = registry.register("s", obj.name, 16)
    swept = registry.register("s", obj.name, 16)
    assert registry.sweep() == 0
    obj.unlink()
    with pytest.raises(NotFound):
        registry.get("s", used.id, "f")
    assert list(registry.regions) == [swept.id]
    assert registry.sweep() == 1 and registry.regions == {}


def _request(shape=(8, 8), pipeline=(GAUSSIAN,), **kwargs) -> ProcessRequest:
    size = int(np.prod(shape)) * 2
    image = ExpectedImage("input.inline", "raw", size, shape, np.dtype(np.int16))
    return ProcessRequest(pipeline=pipeline, input=image, **kwargs)


def test_regions_are_checked_against_the_image_the_bounds_and_the_result():
    inp = RegionRef("r", 0, 128, name="x")
    out = RegionRef("r", 1024, 256, name="x")
    validate.check_regions(_request(input_region=inp, output_region=out), input_size=4096,
                           output_size=4096)
    cases = [
        (dict(input_region=dataclasses.replace(inp, length=126)), "input_region.length"),
        (dict(input_region=dataclasses.replace(inp, offset=4000)), "input_region.offset"),
        (dict(output_region=dataclasses.replace(out, offset=3900)), "output_region.offset"),
        (dict(output_region=dataclasses.replace(out, length=252)), "output_region.length"),
        (dict(input_region=inp, store_result=True), "store_result"),
        (dict(output_region=out, output_format="dicom_file"), "output_format"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgument) as exc:
            validate.check_regions(_request(**kwargs), input_size=4096, output_size=4096)
        assert exc.value.field == field, kwargs
    # A projection's result is smaller: a smaller part holds it.
    validate.check_regions(_request(shape=(4, 8, 8), pipeline=(MIP,),
                                    output_region=dataclasses.replace(out, length=256)),
                           input_size=4096, output_size=4096)


def test_a_region_input_takes_no_operands_and_a_region_output_no_stored_image():
    operand = ExpectedImage("operands[0].inline", "raw", 128, (8, 8), np.dtype(np.int16))
    request = dataclasses.replace(_request(input_region=RegionRef("r", 0, 128, name="x")),
                                  operands=(operand,))
    with pytest.raises(InvalidArgument) as exc:
        validate.check_regions(request, input_size=4096, output_size=None)
    assert exc.value.field == "operands"
    stored = dataclasses.replace(_request(output_region=RegionRef("r", 0, 512, name="x")),
                                 input=ExpectedImage("input.image_id", "stored", 0,
                                                     stored="img1"))
    with pytest.raises(InvalidArgument) as exc:
        validate.check_regions(stored, input_size=None, output_size=4096)
    assert exc.value.field == "output_region"
    dicom = dataclasses.replace(
        _request(input_region=RegionRef("r", 0, 128, name="x")),
        input=ExpectedImage("input.inline", "dicom", 128, file_sizes=(128,)))
    with pytest.raises(InvalidArgument) as exc:
        validate.check_regions(dicom, input_size=4096, output_size=None)
    assert exc.value.field == "input.inline.encoding"


def test_a_subscriber_holds_a_bounded_number_of_regions(obj):
    registry = RegionRegistry(per_subscriber=2)
    first = registry.register("s", obj.name, 16)
    registry.register("s", obj.name, 16)
    with pytest.raises(ResourceExhausted):
        registry.register("s", obj.name, 16)
    registry.register("other", obj.name, 16)          # another subscriber's own count
    registry.unregister("s", first.id)
    registry.register("s", obj.name, 16)
