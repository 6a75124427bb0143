"""The domain's one validator (jobs/validate.py): a routing rule's template is checked as
a request is, before its input is known."""

from __future__ import annotations

import pytest

from medcompute.client.ops import parse_op
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.requests import ProcessRequest
from medcompute.server.jobs.validate import check_template


def _template(*ops: str) -> ProcessRequest:
    return ProcessRequest(pipeline=tuple(parse_op(o) for o in ops))


def test_a_template_with_a_negative_sigma_is_refused_naming_the_field():
    with pytest.raises(InvalidArgument) as info:
        check_template(_template("gaussian:sigma=-1"))
    assert info.value.field == "pipeline[0].gaussian.sigma"
    assert ">= 0" in info.value.message


def test_a_template_whose_parameters_hold_for_some_series_is_accepted():
    check_template(_template("gaussian:sigma_mm=1", "median:size=3"))
    check_template(_template("gaussian:sigma=[1,1]"))          # a single frame's two axes
    check_template(_template("mip:axis=0,thickness=5"))


def test_a_template_refused_for_every_image_reports_the_series_error():
    with pytest.raises(InvalidArgument) as info:
        check_template(_template("median:size=[1,1,1,1,1]"))
    assert info.value.field == "pipeline[0].median.size"
