"""The ListOperations catalogue is generated from the operation messages and agrees with them."""

import pytest
from google.protobuf.descriptor import FieldDescriptor

from medcompute.client.ops import parse_op
from medcompute.proto.v1 import operations_pb2 as o
from medcompute.server.api import operations as listing
from medcompute.server.api.operations import OPERATIONS, catalogue
from medcompute.server.jobs.operations import Geometry, resolve_pipeline

OPS = list(o.Operation.DESCRIPTOR.oneofs_by_name["op"].fields)
KINDS = {FieldDescriptor.TYPE_DOUBLE: "float", FieldDescriptor.TYPE_UINT32: "int",
         FieldDescriptor.TYPE_INT32: "int", FieldDescriptor.TYPE_BOOL: "bool",
         FieldDescriptor.TYPE_ENUM: "enum"}


@pytest.mark.parametrize("op", OPS, ids=lambda f: f.name)
def test_every_parameter_agrees_with_its_field(op):
    spec = OPERATIONS[op.name]
    fields = list(op.message_type.fields)
    assert [p.name for p in spec.params] == [f.name for f in fields]
    for p, f in zip(spec.params, fields):
        assert p.per_axis == f.is_repeated, f"{op.name}.{p.name}"
        assert p.type == KINDS[f.type], f"{op.name}.{p.name}"
        if f.type == FieldDescriptor.TYPE_ENUM:
            names = [v.name for v in f.enum_type.values if v.number != 0]
            assert len(p.choices) == len(names)
            assert all(n.endswith("_" + c.upper()) for n, c in zip(names, p.choices))
            assert p.default in p.choices, f"{op.name}.{p.name}: default {p.default}"
        else:
            assert p.choices == ()


def test_bandpass_cutoffs_are_single_values_as_in_the_proto():
    params = {p.name: p for p in OPERATIONS["bandpass"].params}
    for name in ("low_cutoff", "low_cutoff_mm", "high_cutoff", "high_cutoff_mm"):
        assert not o.BandpassOp.DESCRIPTOR.fields_by_name[name].is_repeated
        assert params[name].per_axis is False
        assert "per axis" not in params[name].description
    assert params["low_cutoff_mm"].unit == "mm" and params["low_cutoff"].unit == "voxel"
    # ... while a Gaussian's sigma is per axis in both.
    sigma = {p.name: p for p in OPERATIONS["gaussian"].params}["sigma"]
    assert sigma.per_axis and o.GaussianOp.DESCRIPTOR.fields_by_name["sigma"].is_repeated


@pytest.mark.parametrize("op", OPS, ids=lambda f: f.name)
def test_every_listed_choice_is_accepted_by_the_client_and_the_resolver(op):
    required = {"gaussian": "sigma=1", "mean": "size=3", "median": "size=3",
                "bandpass": "low_cutoff=2", "subtract": "mask_frame=0"}
    geom = Geometry((4, 8, 8), (1.0, 1.0, 1.0))
    for p in OPERATIONS[op.name].params:
        for choice in p.choices:
            text = ",".join(filter(None, (required.get(op.name, ""), f"{p.name}={choice}")))
            resolved, _ = resolve_pipeline([parse_op(f"{op.name}:{text}")], geom)
            assert choice in resolved[0].summary


def test_a_table_that_misses_a_field_is_refused():
    docs = {k: (s, dict(p)) for k, (s, p) in listing._DOCS.items()}
    del docs["bandpass"][1]["high_cutoff_mm"]
    with pytest.raises(ValueError, match="high_cutoff_mm"):
        catalogue(docs=docs)


def test_a_table_that_names_a_field_the_proto_lacks_is_refused():
    docs = {k: (s, dict(p)) for k, (s, p) in listing._DOCS.items()}
    docs["gaussian"][1]["sigma_per_axis"] = ("", "", "")
    with pytest.raises(ValueError, match="sigma_per_axis"):
        catalogue(docs=docs)
    docs = {k: v for k, v in listing._DOCS.items() if k != "edge"}
    with pytest.raises(ValueError, match="edge"):
        catalogue(docs=docs)
