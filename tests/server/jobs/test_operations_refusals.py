"""Every refusal of the pipeline resolver (jobs/operations.py): the field it names and the
words a caller reads."""

from __future__ import annotations

import pytest

from medcompute.client.ops import parse_op
from medcompute.proto.v1 import operations_pb2 as o
from medcompute.server.errors import InvalidArgument
from medcompute.server.jobs.operations import Geometry, resolve_pipeline

VOL = Geometry((10, 20, 30), (2.0, 0.5, 0.5))
LINE = Geometry((40,), (1.0,))
P = "header.pipeline[0]"


@pytest.mark.parametrize("text, geom, operands, field, words", [
    ("gaussian:sigma=nan", VOL, (), f"{P}.gaussian.sigma", "must be finite, got nan"),
    ("gaussian:sigma=[1,2]", VOL, (), f"{P}.gaussian.sigma",
     "expected 1 value or one per axis (3 for this image), got 2"),
    ("gaussian:sigma=2000", VOL, (), f"{P}.gaussian.sigma",
     "voxels from each voxel; at most 4096 are allowed"),
    ("gaussian:sigma=1,sigma_mm=1", VOL, (), f"{P}.gaussian.sigma_mm",
     "give sigma or sigma_mm, not both"),
    ("bandpass:low_cutoff=2,low_cutoff_mm=2", VOL, (), f"{P}.bandpass.low_cutoff_mm",
     "give low_cutoff or low_cutoff_mm, not both"),
    ("mip:axis=0,thickness=2,thickness_mm=4", VOL, (), f"{P}.project.thickness_mm",
     "give thickness or thickness_mm, not both"),
    ("gradient:axis=3", VOL, (), f"{P}.gradient.axis",
     "axis 3 is out of range for a 3-D image (expected -3..2)"),
    ("edge:axes=[1,-2]", VOL, (), f"{P}.edge.axes", "axes repeat: [1, -2]"),
    ("bandpass:method=butterworth", VOL, (), f"{P}.bandpass.low_cutoff",
     "give low_cutoff and/or high_cutoff (voxels or _mm)"),
    ("bandpass:low_cutoff=4,high_cutoff=4", VOL, (), f"{P}.bandpass.high_cutoff",
     "low_cutoff must be smaller than high_cutoff"),
    ("median:size=[1,1025,1025]", VOL, (), f"{P}.median.size",
     "a median window of 1050625 voxels is too large; at most 1048576 are allowed"),
    ("mip:axis=1,thickness=3.5", VOL, (), f"{P}.project.thickness",
     "must be whole voxels, got 3.5 (or give thickness_mm)"),
    ("mip:axis=0,step=2", VOL, (), f"{P}.project.step", "step needs a slab thickness"),
    ("mip:axis=0", LINE, (), f"{P}.project.axis", "a 1-D image cannot be projected"),
    ("mip:axis=0,thickness=11", VOL, (), f"{P}.project.thickness",
     "slab of 11 voxels is thicker than the axis (10 voxels)"),
    ("subtract:mask_frame=10", VOL, (), f"{P}.subtract.mask_frame",
     "frame 10 does not exist (the image has 10 frames along axis 0)"),
    ("subtract:mask_frame=0", LINE, (), f"{P}.subtract.mask_frame",
     "frame 0 does not exist (the image has 0 frames along axis 0)"),
    ("add:operand=1", VOL, (Geometry((10, 20, 30)),), f"{P}.add.operand",
     "operand 1 does not exist: the request has 1 operand image(s) in header.operands"),
    ("subtract:operand=0", VOL, (Geometry((10, 20, 31)),), f"{P}.subtract.operand",
     "operand shape (10, 20, 31) does not match the image (10, 20, 30)"),
])
def test_each_refusal_names_its_field(text, geom, operands, field, words):
    with pytest.raises(InvalidArgument) as info:
        resolve_pipeline([parse_op(text)], geom, operands)
    assert info.value.field == field
    assert words in info.value.message, info.value.message


def test_an_empty_pipeline_is_refused():
    with pytest.raises(InvalidArgument) as info:
        resolve_pipeline([], VOL)
    assert info.value.field == "header.pipeline"
    assert info.value.message == "the pipeline is empty; give at least one operation"


def test_a_parameter_from_a_newer_schema_is_refused_by_its_field_number():
    # field 15 (varint 5) of a GaussianOp, which this server's schema does not have
    gaussian = o.GaussianOp.FromString(o.GaussianOp(sigma=[1]).SerializeToString()
                                       + bytes([0x78, 5]))
    with pytest.raises(InvalidArgument) as info:
        resolve_pipeline([o.Operation(gaussian=gaussian)], VOL)
    assert info.value.field == f"{P}.gaussian"
    assert "unknown parameter (field number 15); gaussian takes sigma" in info.value.message
