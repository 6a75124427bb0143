"""The pipeline resolver: defaults, units, result geometry and every refusal."""

import math

import pytest

from medcompute.client.ops import parse_op
from medcompute.proto.v1 import operations_pb2 as o
from medcompute.server.api.operations import OPERATIONS
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.operations import Geometry, resolve_pipeline

VOL = Geometry((10, 20, 30), (2.0, 0.5, 0.5))
FLAT = Geometry((20, 30))


def _one(text, geom=VOL, operands=()):
    ops, out = resolve_pipeline([parse_op(text)], geom, operands)
    return ops[0], out


def test_gaussian_defaults_and_mm_conversion():
    op, out = _one("gaussian:sigma_mm=1")
    assert op.kernel == "gaussian"
    assert op.args == ((0.5, 2.0, 2.0),)
    assert op.kwargs == {"truncate": 4.0, "mode": "nearest", "cval": 0.0}
    assert "sigma=(0.5, 2, 2) voxel" in op.summary and "sigma_mm=(1, 1, 1) mm" in op.summary
    assert out == VOL


def test_per_axis_values_and_voxel_units():
    op, _ = _one("gaussian:sigma=[1,2,3],truncate=3,mode=reflect")
    assert op.args == ((1.0, 2.0, 3.0),)
    assert op.kwargs["truncate"] == 3.0 and op.kwargs["mode"] == "reflect"


def test_mean_size_in_mm_rounds_to_odd_voxels():
    op, _ = _one("mean:size_mm=[6,1.6,2.4]")
    assert op.args == ((3, 3, 5),)
    op, _ = _one("median:size_mm=[4,1,1]")  # 2 voxels: a tie goes to the larger odd size
    assert op.args == ((3, 3, 3),)


def test_butterworth_reports_its_padding_mode():
    op, _ = _one("butterworth:low_cutoff=2,mode=reflect")
    assert op.kwargs == {"method": "butterworth", "order": 2, "mode": "reflect", "cval": 0.0}
    assert "mode=reflect" in op.summary


def test_plain_and_gaussian_laplacian():
    plain, _ = _one("laplacian")
    assert plain.name == "laplacian" and plain.args == ((0.0, 0.0, 0.0),)
    log, _ = _one("laplacian:sigma=2")
    assert log.name == "laplacian of gaussian"


def test_projection_shapes_and_spacing():
    _, out = _one("mip:axis=0")
    assert out == Geometry((20, 30), (0.5, 0.5))
    op, out = _one("project:kind=mean,axis=0,thickness_mm=4,step=1")
    assert op.kwargs == {"kind": "mean", "axis": 0, "thickness": 2, "step": 1}
    assert out.shape == (9, 20, 30) and out.spacing == (2.0, 0.5, 0.5)
    _, out = _one("project:axis=-1,thickness=10")
    assert out.shape == (10, 20, 3) and out.spacing == (2.0, 0.5, 5.0)


def test_pipeline_geometry_flows_from_op_to_op():
    ops, out = resolve_pipeline([parse_op("mip:axis=0"), parse_op("gaussian:sigma_mm=1")], VOL)
    assert ops[1].args == ((2.0, 2.0),)
    assert out.shape == (20, 30)


def test_subtract_with_operand_and_mask_frame():
    op, _ = _one("subtract:weight=0.5", VOL, [Geometry((20, 30))])
    assert op.operand == 0 and op.kwargs["weight"] == 0.5
    op, _ = _one("subtract:mask_frame=3")
    assert op.operand is None and op.kwargs["mask_frame"] == 3


def _refusal(text, geom=VOL, operands=()):
    with pytest.raises(InvalidArgument) as info:
        resolve_pipeline([parse_op(text)], geom, operands)
    return info.value


@pytest.mark.parametrize("text, field, words", [
    ("gaussian:sigma=-1", "header.pipeline[0].gaussian.sigma", ">= 0"),
    ("gaussian:sigma=nan", "header.pipeline[0].gaussian.sigma", "finite"),
    ("gaussian:sigma=inf", "header.pipeline[0].gaussian.sigma", "finite"),
    ("gaussian", "header.pipeline[0].gaussian.sigma", "required"),
    ("gaussian:sigma=1,sigma_mm=1", "header.pipeline[0].gaussian.sigma_mm", "not both"),
    ("gaussian:sigma=[1,2]", "header.pipeline[0].gaussian.sigma", "one per axis"),
    ("gaussian:sigma=1,truncate=0", "header.pipeline[0].gaussian.truncate", "> 0"),
    ("mean:size=0", "header.pipeline[0].mean.size", ">= 1"),
    ("gradient:axis=3", "header.pipeline[0].gradient.axis", "out of range"),
    ("gradient:order=3", "header.pipeline[0].gradient.order", "1 or 2"),
    ("edge:axes=[0,0]", "header.pipeline[0].edge.axes", "repeat"),
    ("bandpass", "header.pipeline[0].bandpass.low_cutoff", "low_cutoff"),
    ("bandpass:low_cutoff=8,high_cutoff=4", "header.pipeline[0].bandpass.high_cutoff",
     "smaller"),
    ("mip:axis=-4", "header.pipeline[0].project.axis", "out of range"),
    ("mip:axis=0,thickness=11", "header.pipeline[0].project.thickness", "thicker"),
    ("mip:step=2", "header.pipeline[0].project.step", "thickness"),
    ("mip:thickness=2.5", "header.pipeline[0].project.thickness", "whole voxels"),
    ("subtract", "header.pipeline[0].subtract.operand", "0 operand"),
    ("subtract:mask_frame=10", "header.pipeline[0].subtract.mask_frame", "does not exist"),
    ("add:operand=1", "header.pipeline[0].add.operand", "does not exist"),
])
def test_refusals_name_the_field(text, field, words):
    err = _refusal(text)
    assert err.field == field
    assert words in err.message


TINY = Geometry((10, 20, 30), (1e-300, 0.5, 0.5))  # a spacing no real image has


@pytest.mark.parametrize("text, geom, field, words", [
    # Kernels that would take the worker's memory or hours are refused before dispatch.
    ("gaussian:sigma=1e6", VOL, "gaussian.sigma", "at most 4096"),
    ("gaussian:sigma=1,truncate=1e9", VOL, "gaussian.sigma", "truncated at 1e+09 sigma"),
    ("laplacian:sigma=1e9", VOL, "laplacian.sigma", "at most 4096"),
    ("mean:size=4294967295", VOL, "mean.size", "at most 4096"),
    ("median:size=[3,1025,1025]", VOL, "median.size", "median window of 3151875 voxels"),
    ("bandpass:low_cutoff=1,high_cutoff=1e9", VOL, "bandpass.high_cutoff", "at most 4096"),
    ("gaussian:sigma_mm=1e6", VOL, "gaussian.sigma_mm", "at most 4096"),
    # Millimetres whose voxel count overflows a float.
    ("gaussian:sigma_mm=1e300", TINY, "gaussian.sigma_mm", "more voxels than a number can hold"),
    ("mean:size_mm=1e300", TINY, "mean.size_mm", "axis 0"),
    ("bandpass:low_cutoff_mm=1e300", TINY, "bandpass.low_cutoff_mm", "1e-300 mm"),
    ("mip:axis=0,thickness_mm=1e300", TINY, "project.thickness_mm", "more voxels"),
    ("mip:axis=0,thickness=2,step_mm=1e300", TINY, "project.step_mm", "more voxels"),
])
def test_kernels_too_large_to_run_are_refused(text, geom, field, words):
    err = _refusal(text, geom)
    assert err.field == f"header.pipeline[0].{field}"
    assert words in err.message, err.message


def test_the_largest_kernels_allowed_resolve():
    op, _ = _one("gaussian:sigma=1024")
    assert op.kernel == "gaussian" and op.args == ((1024.0,) * 3,)
    op, _ = _one("median:size=[1,1023,1025]")
    assert op.kernel == "median" and op.args == ((1, 1023, 1025),)
    op, _ = _one("bandpass:low_cutoff=1,high_cutoff=1e9,method=butterworth")  # an FFT
    assert op.kernel == "bandpass" and op.kwargs["method"] == "butterworth"


@pytest.mark.parametrize("spacing", [(-1.0, 0.0), (0.5, 0.0), (math.inf, 0.5)])
def test_mm_on_a_spacing_that_is_not_positive_is_refused(spacing):
    """A stored image an earlier version kept with such spacing (every door refuses it
    now): refused naming the parameter, not a ZeroDivisionError."""
    err = _refusal("gaussian:sigma_mm=1", Geometry((20, 30), spacing))
    assert err.field == "header.pipeline[0].gaussian.sigma_mm"
    assert "not a positive number" in err.message and "in voxels" in err.message


def test_mm_without_spacing_says_what_to_do():
    err = _refusal("gaussian:sigma_mm=1", FLAT)
    assert err.field == "header.pipeline[0].gaussian.sigma_mm"
    assert "no voxel spacing" in err.message and "spacing_mm" in err.message
    err = _refusal("gradient:per_mm=true", FLAT)
    assert err.field == "header.pipeline[0].gradient.per_mm"


def test_mismatched_operand_shape():
    err = _refusal("subtract", VOL, [Geometry((10, 20, 31))])
    assert err.field == "header.pipeline[0].subtract.operand"
    assert "(10, 20, 31)" in err.message and "(10, 20, 30)" in err.message


def test_empty_pipeline():
    with pytest.raises(InvalidArgument, match="empty") as info:
        resolve_pipeline([], VOL)
    assert info.value.field == "header.pipeline"


def test_unknown_operation_and_unknown_parameter_from_a_newer_client():
    unknown_op = o.Operation.FromString(bytes([0xFA, 0x01, 0x00]))  # field 31, empty message
    with pytest.raises(InvalidArgument, match="does not know") as info:
        resolve_pipeline([unknown_op], VOL)
    assert info.value.field == "header.pipeline[0]"
    op = o.Operation(gaussian=o.GaussianOp(sigma=[1]))
    extra = o.Operation.FromString(
        o.Operation(gaussian=o.GaussianOp.FromString(
            o.GaussianOp(sigma=[1]).SerializeToString() + bytes([0x78, 5]))).SerializeToString())
    assert resolve_pipeline([op], VOL)
    with pytest.raises(InvalidArgument, match="unknown parameter") as info:
        resolve_pipeline([extra], VOL)
    assert info.value.field == "header.pipeline[0].gaussian"


def test_catalogue_covers_every_operation_in_the_api():
    names = [f.name for f in o.Operation.DESCRIPTOR.oneofs_by_name["op"].fields]
    assert sorted(OPERATIONS) == sorted(names)
    for name in names:
        fields = {f.name for f in getattr(o, o.Operation.DESCRIPTOR.fields_by_name[name]
                                          .message_type.name).DESCRIPTOR.fields}
        assert {p.name for p in OPERATIONS[name].params} == fields, name


def test_resolved_ops_are_plain_values():
    import pickle

    ops, _ = resolve_pipeline([parse_op("gaussian:sigma=1"), parse_op("mip")], VOL)
    assert pickle.loads(pickle.dumps(ops)) == ops
    assert all(math.isfinite(v) for v in ops[0].args[0])


@pytest.mark.parametrize("text, words", [
    ("gaussian:sigma=1,mode=constant,cval=0.5", "whole number from -32768 to 65535"),
    ("mean:size=3,mode=constant,cval=70000", "got 70000"),
    ("median:size=3,mode=constant,cval=-40000", "got -40000"),
])
def test_a_constant_edge_takes_a_bounded_whole_fill_value(text, words):
    # A GPU compiles one kernel per fill value: a caller cannot ask for unboundedly many.
    err = _refusal(text)
    assert err.field == f"header.pipeline[0].{text.split(':')[0]}.cval"
    assert words in err.message, err.message
    op, _ = _one("gaussian:sigma=1,mode=constant,cval=-1024")
    assert op.kwargs["cval"] == -1024.0


def test_a_fill_value_without_a_constant_edge_is_not_kept():
    # Unused, it would still make a kernel configuration of its own on a GPU.
    op, _ = _one("gaussian:sigma=1,mode=reflect,cval=0.25")
    assert op.kwargs["cval"] == 0.0
