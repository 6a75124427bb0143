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


# -- working memory against a worker's (check_memory) --------------------------------

def _resolved(*ops: str, shape=(128, 128)):
    from medcompute.server.jobs.operations import Geometry, resolve_pipeline

    image = Geometry(shape, (1.0,) * len(shape))
    return resolve_pipeline([parse_op(o) for o in ops], image, field="pipeline")[0], image


def test_a_median_window_a_worker_cannot_hold_is_refused_naming_its_size():
    from medcompute.server.errors import ResourceExhausted
    from medcompute.server.jobs.validate import check_memory

    ops, image = _resolved("gaussian:sigma=1", "median:size=301")
    with pytest.raises(ResourceExhausted) as info:
        check_memory(ops, image, compute_dtype="float32", budget=3 << 30)
    assert info.value.field == "pipeline[1].median.size"
    assert "GiB" in info.value.message and "--worker-memory" in info.value.message
    ops, image = _resolved("median:size=[1024]", shape=(64, 64))
    with pytest.raises(ResourceExhausted) as info:
        check_memory(ops, image, compute_dtype="float32", budget=16 << 30)
    assert info.value.field == "pipeline[0].median.size"
    ops, image = _resolved("median:size_mm=301")
    with pytest.raises(ResourceExhausted) as info:
        check_memory(ops, image, compute_dtype="float32", budget=3 << 30)
    assert info.value.field == "pipeline[0].median.size_mm"     # as the caller gave it


def test_ordinary_pipelines_fit():
    from medcompute.server.jobs.validate import check_memory

    ops, image = _resolved("median:size=5", "gaussian:sigma=3", "bandpass:high_cutoff=20",
                           "mip:axis=0", shape=(64, 256, 256))
    check_memory(ops, image, compute_dtype="float64", budget=1 << 30)


def test_a_volume_larger_than_a_worker_is_counted_by_its_slabs():
    from medcompute.server.jobs.validate import check_memory, piece_shape

    ops, image = _resolved("gaussian:sigma=2", "median:size=3", shape=(512, 512, 512))
    budget = 256 << 20          # the image alone is 512 MiB of float32: it is cut
    assert piece_shape(image.shape, ops[1], budget)[0] < 512
    check_memory(ops, image, compute_dtype="float32", budget=budget)


def test_the_shape_each_operation_sees_follows_projections():
    from medcompute.server.jobs.operations import shapes_seen

    ops, image = _resolved("gaussian:sigma=1", "mip:axis=1,thickness=4,step=2", "mip:axis=0",
                           "median:size=3", shape=(10, 20, 30))
    assert shapes_seen(ops, image.shape) == [(10, 20, 30), (10, 20, 30), (10, 9, 30),
                                             (9, 30)]
