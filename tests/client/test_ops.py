"""Operations from text and dicts, as the command line and the client take them."""

import pytest

from medcompute.client.ops import ALIASES, op_from_dict, operation_names, parse_op, to_operation
from medcompute.proto.v1 import operations_pb2 as o


def test_voxel_and_mm_and_per_axis():
    assert parse_op("gaussian:sigma=2").gaussian.sigma == [2.0]
    assert parse_op("gaussian:sigma_mm=1.5").gaussian.sigma_mm == [1.5]
    assert parse_op("gaussian:sigma_mm=[1.5, 0.7,0.7]").gaussian.sigma_mm == [1.5, 0.7, 0.7]


def test_enums_by_name_and_flags():
    op = parse_op("edge:operator=Scharr,axes=[1,2],mode=reflect")
    assert op.edge.operator == o.EDGE_OPERATOR_SCHARR and list(op.edge.axes) == [1, 2]
    assert op.edge.mode == o.BOUNDARY_MODE_REFLECT
    assert parse_op("gradient:axis=-1,per_mm=yes").gradient.per_mm is True
    bandpass = parse_op("butterworth:low_cutoff_mm=2,order=4").bandpass
    assert bandpass.method == o.BANDPASS_METHOD_BUTTERWORTH


def test_shorthands():
    assert parse_op("mip:axis=1").project.kind == o.PROJECTION_MAX
    assert parse_op("minip").project.kind == o.PROJECTION_MIN
    assert parse_op("mip:kind=mean").project.kind == o.PROJECTION_MEAN  # explicit wins
    for alias, (name, _) in ALIASES.items():
        assert parse_op(alias).WhichOneof("op") == name


def test_every_operation_parses_by_name():
    for name in operation_names():
        assert parse_op(name).WhichOneof("op") == name


@pytest.mark.parametrize("text, words", [
    ("foo:sigma=1", "unknown operation 'foo'"),
    ("gaussian:sgma=2", "unknown parameter 'sgma'"),
    ("gaussian:sigma=abc", "gaussian.sigma: expected a number"),
    ("gaussian:truncate=[1,2]", "takes one value"),
    ("edge:operator=canny", "expected one of sobel, prewitt, scharr"),
    ("gradient:order=1.5", "expected an integer"),
    ("gradient:per_mm=maybe", "true or false"),
    ("subtract:operand=-1", ">= 0"),
    ("gaussian:sigma=[1,2", "unbalanced"),
    ("gaussian:sigma", "key=value"),
    (":sigma=1", "NAME"),
])
def test_mistakes_are_explained(text, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("(", r"\(")):
        parse_op(text)


def test_other_forms():
    op = o.Operation(mean=o.MeanOp(size=[3]))
    assert to_operation(op) is op
    assert to_operation({"op": "gaussian", "sigma": [1, 2]}).gaussian.sigma == [1.0, 2.0]
    assert op_from_dict("median", {"size": 3}).median.size == [3]
    with pytest.raises(ValueError, match="'op' key"):
        to_operation({"sigma": 1})
    with pytest.raises(TypeError):
        to_operation(3)
