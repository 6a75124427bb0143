"""The slab planner: axis choice, halo width, and when not to split."""

import pytest

from medcompute.client.ops import parse_op
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.worker.slabs import plan_split

SHAPE = (40, 30, 20)


def _plan(*texts, shape=SHAPE, slabs=4, operands=()):
    ops, _ = resolve_pipeline([parse_op(t) for t in texts], Geometry(shape), operands)
    return plan_split(ops, shape, slabs)


def test_regions_cover_the_axis_exactly_once_with_the_halo():
    plan = _plan("gaussian:sigma=1")  # radius 4
    assert (plan.axis, plan.out_axis, plan.halo) == (0, 0, 4)
    cores = [(r.start, r.stop) for r in plan.regions]
    assert cores == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert [(r.lo, r.hi) for r in plan.regions] == [(0, 14), (6, 24), (16, 34), (26, 40)]


def test_halo_adds_up_over_the_pipeline():
    plan = _plan("gaussian:sigma=1", "mean:size=5", "edge", "gradient:axis=0")
    assert plan.halo == 4 + 2 + 1 + 1
    assert _plan("gradient:axis=2").halo == 0
    assert _plan("laplacian").halo == 1
    # DoG reaches as far as the Gaussian of the larger cutoff: sigma = sqrt(ln2/2)/pi * 10
    assert _plan("bandpass:low_cutoff=2,high_cutoff=10").halo == int(4 * 1.8739 + 0.5)


def test_projection_moves_the_split_to_another_axis():
    plan = _plan("gaussian:sigma=1", "mip:axis=0")
    assert plan.axis == 1 and plan.out_axis == 0  # axis 1 of the input is axis 0 of the MIP
    plan = _plan("mip:axis=2")
    assert plan.axis == 0 and plan.out_axis == 0
    plan = _plan("project:axis=0,thickness=4")
    assert plan.axis == 1 and plan.out_axis == 1


def test_mask_frame_keeps_axis_zero_whole():
    plan = _plan("subtract:mask_frame=0")
    assert plan.axis == 1


@pytest.mark.parametrize("texts", [
    ("butterworth:low_cutoff=2",),
    ("gaussian:sigma=1,mode=wrap",),
])
def test_whole_image_operations_are_not_split(texts):
    assert _plan(*texts) is None


def test_no_split_when_it_would_not_pay():
    assert _plan("gaussian:sigma=1", slabs=1) is None
    assert _plan("gaussian:sigma=1", shape=(4, 30, 20), slabs=4) is None  # halo 4 > slab
    assert _plan("gaussian:sigma=1", shape=(100,), slabs=4) is None
    assert len(_plan("gaussian:sigma=1", shape=(16, 30, 20), slabs=4).regions) == 2
