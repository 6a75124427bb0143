"""A gradient of an order other than first or second (jobs/operations.py): refused naming
its order field; left unset, it is the first derivative."""

from __future__ import annotations

import pytest

from medcompute.client.ops import parse_op
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.operations import Geometry, resolve_pipeline

VOL = Geometry((10, 20, 30), (2.0, 0.5, 0.5))


@pytest.mark.parametrize("order", [3, 4])
def test_a_gradient_order_other_than_1_or_2_is_refused(order):
    with pytest.raises(InvalidArgument) as info:
        resolve_pipeline([parse_op(f"gradient:axis=0,order={order}")], VOL)
    assert info.value.field == "header.pipeline[0].gradient.order"
    assert info.value.message == f"expected 1 or 2, got {order}"


def test_order_left_unset_is_the_first_derivative():
    ops, _ = resolve_pipeline([parse_op("gradient:axis=0")], VOL)
    assert ops[0].kwargs["order"] == 1
