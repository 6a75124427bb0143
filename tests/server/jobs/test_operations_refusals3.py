"""A package operation in a pipeline (jobs/operations.py) without its package's name, or
set beside a built-in operation in the same step: refused naming the step's field,
before any package is looked up."""

from __future__ import annotations

import pytest

from medcompute.client.ops import package_op, parse_op
from medcompute.proto.v1 import operations_pb2
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.operations import Geometry, resolve_pipeline

VOL = Geometry((10, 20, 30), (2.0, 0.5, 0.5))


def test_a_package_operation_without_its_package_is_refused():
    op = operations_pb2.Operation(package=operations_pb2.PackageOp(operation="unsharp_mask"))
    with pytest.raises(InvalidArgument) as info:
        resolve_pipeline([parse_op("gaussian:sigma=1"), op], VOL)
    assert info.value.field == "header.pipeline[1].package.package"
    assert info.value.message == "required: the name of an approved software package"


def test_a_step_with_a_builtin_operation_and_a_package_is_refused():
    op = parse_op("median:size=3")
    op.package.CopyFrom(package_op("unsharp_mask@sharpen").package)
    with pytest.raises(InvalidArgument) as info:
        resolve_pipeline([op], VOL)
    assert info.value.field == "header.pipeline[0].package"
    assert info.value.message == "give one operation: median or package, not both"
