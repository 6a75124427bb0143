"""A request whose input is in a shared-memory region and that has operands
(jobs/validate.py): refused naming operands, before any job."""

from __future__ import annotations

import numpy as np
import pytest

from medcompute.client.ops import parse_op
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.requests import ProcessRequest, RegionRef
from medcompute.server.jobs.validate import check_regions
from medcompute.server.storage.spool import ExpectedImage

SHAPE = (4, 8, 8)
SIZE = int(np.prod(SHAPE)) * 4       # float32
IMAGE = ExpectedImage("input.inline", "raw", SIZE, SHAPE, np.dtype(np.float32))
MASK = ExpectedImage("operands[0].inline", "raw", SIZE, SHAPE, np.dtype(np.float32))


def test_a_region_input_with_operands_is_refused():
    request = ProcessRequest(pipeline=(parse_op("subtract:operand=0"),), input=IMAGE,
                             operands=(MASK,),
                             input_region=RegionRef("r1", 0, SIZE, "/medcompute-test"))
    with pytest.raises(InvalidArgument) as info:
        check_regions(request, input_size=SIZE, output_size=None)
    assert info.value.field == "operands"
    assert info.value.message == ("a request whose input is in a shared-memory region takes no "
                                  "operands (send them all as chunks)")
