"""Every refusal of the domain's one validator (jobs/validate.py), called directly: the
error class, the field it names and the words a caller reads."""

from __future__ import annotations

import numpy as np
import pytest

from medcompute.client.ops import parse_op
from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.jobs.requests import ProcessRequest, RegionRef
from medcompute.server.jobs.validate import (
    check_memory,
    check_output_geometry,
    check_regions,
    check_request,
    check_template,
)
from medcompute.server.storage.spool import ExpectedImage

PIPELINE = (parse_op("gaussian:sigma=1"),)


def _raw(shape=(4, 8, 8), dtype="float32", field="input.inline") -> ExpectedImage:
    dtype = np.dtype(dtype)
    return ExpectedImage(field, "raw", int(np.prod(shape)) * dtype.itemsize, tuple(shape), dtype)


def _dicom(field="input.inline") -> ExpectedImage:
    return ExpectedImage(field, "dicom", 1000, file_sizes=(1000,))


def _region(length, offset=0) -> RegionRef:
    return RegionRef("r1", offset, length, "/medcompute-test")


def test_a_template_without_operations_is_refused():
    with pytest.raises(InvalidArgument) as info:
        check_template(ProcessRequest())
    assert info.value.field == "pipeline"
    assert info.value.message == "expected at least one operation"


def test_a_template_that_names_its_input_is_refused():
    with pytest.raises(InvalidArgument) as info:
        check_template(ProcessRequest(pipeline=PIPELINE, input=_dicom()))
    assert info.value.field == "input"
    assert "leave it empty: the received series is the input" in info.value.message


def test_dicom_output_of_a_raw_input_is_refused():
    with pytest.raises(InvalidArgument) as info:
        check_request(ProcessRequest(pipeline=PIPELINE, input=_raw(),
                                     output_format="dicom_series"))
    assert info.value.field == "output_format"
    assert "DICOM output needs DICOM input (the derived series copies the source's patient " \
        "and study)" in info.value.message


def test_a_dicom_result_of_one_axis_is_refused_before_any_work():
    request = ProcessRequest(pipeline=PIPELINE, input=_dicom(), output_format="dicom_file")
    with pytest.raises(InvalidArgument) as info:
        check_output_geometry(request, Geometry((64,)))
    assert info.value.field == "output_format"
    assert "a DICOM result needs 2 or 3 axes; this pipeline gives 1 (use the array output)" \
        in info.value.message


def test_a_pipeline_over_a_workers_memory_is_refused_naming_the_parameter():
    image = Geometry((256, 256), (1.0, 1.0))
    ops, _ = resolve_pipeline([parse_op("median:size=201")], image, field="pipeline")
    with pytest.raises(ResourceExhausted) as info:
        check_memory(ops, image, compute_dtype="float32", budget=1 << 30)
    assert info.value.field == "pipeline[0].median.size"
    assert "of working memory; a task may use 1 GiB of a worker's memory (--worker-memory): " \
        "use a smaller value" in info.value.message


def _regions(**kw) -> ProcessRequest:
    base = dict(pipeline=PIPELINE, input=_raw())
    return ProcessRequest(**{**base, **kw})


SIZE = 4 * 8 * 8 * 4      # the bytes of _raw()


@pytest.mark.parametrize("request_, sizes, field, words", [
    (_regions(output_region=_region(SIZE), store_result=True), (None, SIZE), "store_result",
     "a result kept in the store does not use shared memory: leave store_result false, or "
     "send the image as chunks"),
    (_regions(input=_dicom(), input_region=_region(1000)), (1000, None),
     "input.inline.encoding", "the image in a shared-memory region is a RAW array"),
    (_regions(input_region=_region(SIZE - 4)), (SIZE, None), "input_region.length",
     f"expected the input's {SIZE} bytes (its shape times its dtype's itemsize), got "
     f"{SIZE - 4}"),
    (_regions(input_region=_region(SIZE, offset=8)), (SIZE, None), "input_region.offset",
     f"offset 8 + length {SIZE} = {SIZE + 8} runs past the region's {SIZE} bytes"),
    (_regions(output_region=_region(SIZE), output_format="dicom_series"), (None, SIZE),
     "output_format", "a result in a shared-memory region is a RAW array"),
    (_regions(input=_dicom(), output_region=_region(SIZE)), (None, SIZE), "output_region",
     "a result in a shared-memory region needs RAW images sent with the request (its size "
     "is checked first)"),
    (_regions(output_region=_region(SIZE, offset=SIZE)), (None, SIZE), "output_region.offset",
     f"runs past the region's {SIZE} bytes"),
])
def test_shared_memory_region_refusals(request_, sizes, field, words):
    with pytest.raises(InvalidArgument) as info:
        check_regions(request_, input_size=sizes[0], output_size=sizes[1])
    assert info.value.field == field
    assert words in info.value.message, info.value.message
