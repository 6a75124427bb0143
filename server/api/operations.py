"""The catalogue shown by ListOperations and ``medcompute ops``, built from the protos.

What can be read from the descriptors is read from them: the operations (the fields of
``Operation.op``), each parameter's name, its type (from the field's type), whether it is
per axis (exactly when the field is repeated) and an enumeration's choices (its values
without their prefix, the UNSPECIFIED zero left out). Only what a descriptor cannot say
(a summary, a description, the unit, the default) comes from the table below, and
:func:`catalogue` refuses a table that names a field the protos do not have or misses one
they do, so the listing cannot drift from the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from medcompute.proto.v1 import operations_pb2

__all__ = ["ParamSpec", "OpSpec", "OPERATIONS", "catalogue", "choices"]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    description: str
    unit: str = ""
    default: str = ""
    per_axis: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpSpec:
    name: str
    summary: str
    params: tuple[ParamSpec, ...]


_TYPES = {
    FieldDescriptor.TYPE_DOUBLE: "float", FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT32: "int", FieldDescriptor.TYPE_UINT32: "int",
    FieldDescriptor.TYPE_INT64: "int", FieldDescriptor.TYPE_UINT64: "int",
    FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_ENUM: "enum",
}

# (description, unit, default) of each field a descriptor cannot describe by itself.
_MODE = ("how the image is extended beyond its border", "", "nearest")
_CVAL = ("fill value for mode=constant", "", "0")
_TRUNC = ("kernel radius", "sigma", "4")
_DOCS: dict[str, tuple[str, dict[str, tuple[str, str, str]]]] = {
    "gaussian": ("Gaussian smoothing", {
        "sigma": ("required: standard deviation", "voxel", ""),
        "sigma_mm": ("standard deviation, in millimetres (needs voxel spacing)", "mm", ""),
        "truncate": _TRUNC, "mode": _MODE, "cval": _CVAL}),
    "mean": ("mean (box) smoothing", {
        "size": ("required: box size", "voxel", ""),
        "size_mm": ("box size, in millimetres (needs voxel spacing), rounded to an odd "
                    "voxel count", "mm", ""),
        "mode": _MODE, "cval": _CVAL}),
    "median": ("median smoothing", {
        "size": ("required: window size", "voxel", ""),
        "size_mm": ("window size, in millimetres (needs voxel spacing), rounded to an odd "
                    "voxel count", "mm", ""),
        "mode": _MODE, "cval": _CVAL}),
    "laplacian": ("Laplacian; with sigma, Laplacian of Gaussian (LoG)", {
        "sigma": ("Gaussian standard deviation; 0 for the plain Laplacian", "voxel", "0"),
        "sigma_mm": ("Gaussian standard deviation, in millimetres (needs voxel spacing)",
                     "mm", ""),
        "truncate": _TRUNC, "mode": _MODE, "cval": _CVAL}),
    "gradient": ("derivative along one axis (central differences)", {
        "axis": ("axis to differentiate along; negative counts from the end", "", "0"),
        "order": ("derivative order, 1 or 2", "", "1"),
        "per_mm": ("divide by spacing**order (intensity per mm)", "", "false"),
        "mode": _MODE, "cval": _CVAL}),
    "edge": ("gradient magnitude", {
        "operator": ("edge operator", "", "sobel"),
        "axes": ("axes to take the magnitude over", "", "all"),
        "mode": _MODE, "cval": _CVAL}),
    "bandpass": ("band-pass between two structure sizes (gain 1/2 at each cutoff)", {
        "low_cutoff": ("remove detail finer than this wavelength; one value for every "
                       "axis", "voxel", ""),
        "low_cutoff_mm": ("the same in millimetres (needs voxel spacing); one value for "
                          "every axis", "mm", ""),
        "high_cutoff": ("remove structures coarser than this wavelength; one value for "
                        "every axis", "voxel", ""),
        "high_cutoff_mm": ("the same in millimetres (needs voxel spacing); one value for "
                           "every axis", "mm", ""),
        "method": ("filter", "", "dog"),
        "order": ("Butterworth order", "", "2"),
        "truncate": ("kernel radius (dog)", "sigma", "4"),
        "mode": _MODE, "cval": _CVAL}),
    "project": ("projection along an axis, optionally in slabs", {
        "kind": ("reduction", "", "max"),
        "axis": ("axis to project along", "", "0"),
        "thickness": ("slab thickness; absent: the whole axis", "voxel", ""),
        "thickness_mm": ("slab thickness in millimetres", "mm", ""),
        "step": ("distance between slab starts", "voxel", "thickness"),
        "step_mm": ("distance between slab starts in millimetres", "mm", "")}),
    "subtract": ("image - weight * operand (mask subtraction for DSA)", {
        "operand": ("index of the second image in header.operands, from 0", "", "0"),
        "weight": ("weight of the operand", "", "1"),
        "mask_frame": ("use this frame of the image as the mask instead", "", ""),
        "logarithmic": ("log(image) - weight * log(mask)", "", "false")}),
    "add": ("image + weight * operand", {
        "operand": ("index of the second image in header.operands, from 0", "", "0"),
        "weight": ("weight of the operand", "", "1")}),
}


def choices(field: FieldDescriptor) -> tuple[str, ...]:
    """An enum field's accepted names, lower case, without the enum's prefix."""
    values = field.enum_type.values
    prefix = field.enum_type.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return tuple(v.name.removeprefix(prefix).lower() for v in values if v.number != 0)


def _param(field: FieldDescriptor, doc: tuple[str, str, str]) -> ParamSpec:
    description, unit, default = doc
    kind = _TYPES[field.type]
    return ParamSpec(field.name, kind, description, unit=unit, default=default,
                     per_axis=field.is_repeated,
                     choices=choices(field) if kind == "enum" else ())


def catalogue(operation: Descriptor = operations_pb2.Operation.DESCRIPTOR,
              docs: dict = _DOCS) -> dict[str, OpSpec]:
    """Every operation of ``operation``'s ``op`` oneof with its parameters, in field order.

    Raises ValueError when ``docs`` and the descriptors disagree on a name.
    """
    out: dict[str, OpSpec] = {}
    fields = operation.oneofs_by_name["op"].fields
    extra = set(docs) - {f.name for f in fields}
    if extra:
        raise ValueError(f"documented operations the protos do not have: {sorted(extra)}")
    for op in fields:
        if op.name not in docs:
            raise ValueError(f"operation {op.name} is not documented")
        summary, params = docs[op.name]
        message = op.message_type
        names = [f.name for f in message.fields]
        if set(params) != set(names):
            raise ValueError(f"{op.name}: documented parameters {sorted(params)} differ from "
                             f"the fields of {message.name} {sorted(names)}")
        out[op.name] = OpSpec(op.name, summary,
                              tuple(_param(f, params[f.name]) for f in message.fields))
    return out


OPERATIONS: dict[str, OpSpec] = catalogue()
