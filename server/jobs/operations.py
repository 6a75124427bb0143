"""The operations: their parameters, units and defaults, and the resolver.

The resolver turns the pipeline of a request (proto messages) into plain
:class:`ResolvedOp` values before any work is dispatched: every length in
voxels, every default filled in, every error raised here as
:class:`InvalidArgument` naming the field (``header.pipeline[1].gaussian.sigma_mm``).
A worker receives only resolved operations and calls the kernels with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf import unknown_fields

from medcompute.kernels import gaussian_sigma_for_cutoff, projected_spacing, slab_count
from medcompute.kernels._params import nearest_odd
from medcompute.proto import wire
from medcompute.proto.v1 import operations_pb2 as ops_pb2
from medcompute.server.errors import InvalidArgument
from medcompute.server.software.catalog import APPROVED
from medcompute.server.worker.packages import PackageRun

__all__ = ["Geometry", "ResolvedOp", "Param", "resolve_pipeline", "shapes_seen"]

MODES = {
    ops_pb2.BOUNDARY_MODE_UNSPECIFIED: "nearest",
    ops_pb2.BOUNDARY_MODE_NEAREST: "nearest",
    ops_pb2.BOUNDARY_MODE_REFLECT: "reflect",
    ops_pb2.BOUNDARY_MODE_MIRROR: "mirror",
    ops_pb2.BOUNDARY_MODE_CONSTANT: "constant",
    ops_pb2.BOUNDARY_MODE_WRAP: "wrap",
}
EDGE_OPERATORS = {
    ops_pb2.EDGE_OPERATOR_UNSPECIFIED: "sobel",
    ops_pb2.EDGE_OPERATOR_SOBEL: "sobel",
    ops_pb2.EDGE_OPERATOR_PREWITT: "prewitt",
    ops_pb2.EDGE_OPERATOR_SCHARR: "scharr",
}
BANDPASS_METHODS = {
    ops_pb2.BANDPASS_METHOD_UNSPECIFIED: "dog",
    ops_pb2.BANDPASS_METHOD_DOG: "dog",
    ops_pb2.BANDPASS_METHOD_BUTTERWORTH: "butterworth",
}
PROJECTIONS = {
    ops_pb2.PROJECTION_UNSPECIFIED: "max",
    ops_pb2.PROJECTION_MAX: "max",
    ops_pb2.PROJECTION_MIN: "min",
    ops_pb2.PROJECTION_MEAN: "mean",
    ops_pb2.PROJECTION_SUM: "sum",
}
DEFAULT_TRUNCATE = 4.0
#: How far a kernel may reach from a voxel along an axis, in voxels. A larger one is refused
#: before it is allocated: it would exhaust a worker's memory or run for hours.
MAX_REACH = 4096
#: Voxels in a median window (the median's work per voxel grows with them).
MAX_WINDOW = 1 << 20
#: The constant a ``mode=constant`` edge is filled with: a whole number in the range of
#: the stored voxel types (int16 and uint16). A GPU compiles one kernel per value, so
#: values are bounded and whole, and the worker compiles each once (kernel_cache.py).
CVAL_RANGE = (-32768, 65535)


@dataclass(frozen=True)
class Geometry:
    """Shape and voxel spacing (mm per axis, or None when unknown) of an image."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class Param:
    """A resolved parameter, as reported in the result."""

    name: str
    values: tuple[float, ...] = ()
    text: str = ""
    unit: str = ""

    def __str__(self) -> str:
        if self.values:
            nums = ", ".join(f"{v:g}" for v in self.values)
            shown = nums if len(self.values) == 1 else f"({nums})"
        else:
            shown = self.text
        return f"{self.name}={shown}" + (f" {self.unit}" if self.unit else "")


@dataclass(frozen=True)
class ResolvedOp:
    """One operation, ready for a worker: ``kernel(image, *args, **kwargs)``."""

    name: str
    kernel: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    operand: int | None = None        # index into the request's operands
    params: tuple[Param, ...] = ()

    @property
    def summary(self) -> str:
        return f"{self.name} " + ", ".join(str(p) for p in self.params)


# -- parameter helpers ----------------------------------------------------------

def _finite(value: float, name: str, *, minimum: float | None = None, strict: bool = False):
    if not math.isfinite(value):
        raise InvalidArgument(f"must be finite, got {value}", name)
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        op = ">" if strict else ">="
        raise InvalidArgument(f"must be {op} {minimum:g}, got {value:g}", name)
    return float(value)


def _per_axis(values: Sequence[float], ndim: int, name: str) -> tuple[float, ...]:
    if len(values) == 1:
        return tuple(float(values[0]) for _ in range(ndim))
    if len(values) != ndim:
        raise InvalidArgument(
            f"expected 1 value or one per axis ({ndim} for this image), got {len(values)}", name)
    return tuple(float(v) for v in values)


def _need_spacing(geom: Geometry, name: str) -> tuple[float, ...]:
    if geom.spacing is None:
        raise InvalidArgument(
            "given in mm but the image has no voxel spacing; send the spacing in the image "
            "descriptor (spacing_mm) or give the length in voxels", name)
    if not all(math.isfinite(s) and s > 0 for s in geom.spacing):
        # Only an image an earlier version stored: every door now refuses such spacing.
        raise InvalidArgument(
            "given in mm but the image's voxel spacing is not a positive number on every "
            "axis; give the length in voxels", name)
    return geom.spacing


def _to_voxels(mm: Sequence[float], spacing: Sequence[float], name: str) -> tuple[float, ...]:
    """Millimetres over spacing, each axis; refused when that is too large for a float."""
    values = tuple(v / s for v, s in zip(mm, spacing))
    for axis, (v, s) in enumerate(zip(mm, spacing)):
        if not math.isfinite(v / s):
            raise InvalidArgument(f"{v:g} mm is more voxels than a number can hold at the "
                                  f"image's spacing of {s:g} mm (axis {axis})", name)
    return values


def _check_reach(reach: Sequence[float], name: str, what: str) -> None:
    """Refuse a kernel that reaches more than MAX_REACH voxels from a voxel."""
    worst = max(reach, default=0.0)
    if not worst <= MAX_REACH:
        raise InvalidArgument(f"{what} would reach {worst:.4g} voxels from each voxel; at most "
                              f"{MAX_REACH} are allowed", name)


def _lengths(msg, base: str, geom: Geometry, field: str, *, required: bool,
             minimum: float, strict: bool, odd_from_mm: bool = False):
    """Per-axis voxel lengths from ``base`` (voxels) or ``base_mm``; also the params to report."""
    vox, mm = list(getattr(msg, base)), list(getattr(msg, base + "_mm"))
    if vox and mm:
        raise InvalidArgument(f"give {base} or {base}_mm, not both", f"{field}.{base}_mm")
    if not vox and not mm:
        if required:
            raise InvalidArgument(f"required: give {base} (voxels) or {base}_mm (millimetres)",
                                  f"{field}.{base}")
        return None, ()
    if vox:
        name = f"{field}.{base}"
        values = _per_axis(vox, geom.ndim, name)
        values = tuple(_finite(v, name, minimum=minimum, strict=strict) for v in values)
        return values, (Param(base, values, unit="voxel"),)
    name = f"{field}.{base}_mm"
    given = _per_axis(mm, geom.ndim, name)
    given = tuple(_finite(v, name, minimum=minimum, strict=strict) for v in given)
    values = _to_voxels(given, _need_spacing(geom, name), name)
    if odd_from_mm:
        values = tuple(float(nearest_odd(v)) for v in values)
    return values, (Param(base, values, unit="voxel"), Param(base + "_mm", given, unit="mm"))


def _enum(table: dict, msg, attr: str, field: str) -> str:
    """``table[msg.attr]``; InvalidArgument naming the value sent and the accepted ones."""
    value = getattr(msg, attr)
    try:
        return table[value]
    except KeyError:
        enum = msg.DESCRIPTOR.fields_by_name[attr].enum_type
        raise InvalidArgument(wire.enum_choices(enum, value), f"{field}.{attr}") from None


def _axis(axis: int, ndim: int, name: str) -> int:
    if not -ndim <= axis < ndim:
        raise InvalidArgument(
            f"axis {axis} is out of range for a {ndim}-D image (expected {-ndim}..{ndim - 1})",
            name)
    return axis % ndim


def _truncate(msg, field: str) -> float:
    if not msg.HasField("truncate"):
        return DEFAULT_TRUNCATE
    return _finite(msg.truncate, f"{field}.truncate", minimum=0.0, strict=True)


def _neighbourhood(msg, field: str) -> tuple[dict, tuple[Param, ...]]:
    mode = _enum(MODES, msg, "mode", field)
    cval = _finite(msg.cval, f"{field}.cval")
    if mode != "constant":
        cval = 0.0      # not used; one value, so that it never makes a kernel of its own
    elif cval != int(cval) or not CVAL_RANGE[0] <= cval <= CVAL_RANGE[1]:
        raise InvalidArgument(f"must be a whole number from {CVAL_RANGE[0]} to "
                              f"{CVAL_RANGE[1]} (the edge's fill value), got {cval:g}",
                              f"{field}.cval")
    params = (Param("mode", text=mode),) + ((Param("cval", (cval,)),) if mode == "constant" else ())
    return {"mode": mode, "cval": cval}, params


# -- one resolver per operation -------------------------------------------------

def _gaussian(msg, geom, operands, field):
    sigma, p = _lengths(msg, "sigma", geom, field, required=True, minimum=0.0, strict=False)
    truncate = _truncate(msg, field)
    _check_reach([truncate * s for s in sigma], f"{field}.{p[-1].name}",
                 f"a Gaussian of this sigma (truncated at {truncate:g} sigma)")
    kw, pm = _neighbourhood(msg, field)
    return ResolvedOp("gaussian", "gaussian", (sigma,), dict(truncate=truncate, **kw),
                      params=p + (Param("truncate", (truncate,), unit="sigma"),) + pm), geom


def _box(kernel):
    def resolve(msg, geom, operands, field):
        size, p = _lengths(msg, "size", geom, field, required=True, minimum=1.0, strict=False,
                           odd_from_mm=True)
        _check_reach([v // 2 for v in size], f"{field}.{p[-1].name}", f"a {kernel} window")
        if kernel == "median" and math.prod(size) > MAX_WINDOW:
            raise InvalidArgument(f"a median window of {int(math.prod(size))} voxels is too large; "
                                  f"at most {MAX_WINDOW} are allowed", f"{field}.{p[-1].name}")
        size = tuple(int(v) for v in size)
        kw, pm = _neighbourhood(msg, field)
        return ResolvedOp(kernel, kernel, (size,), kw, params=p + pm), geom
    return resolve


def _laplacian(msg, geom, operands, field):
    sigma, p = _lengths(msg, "sigma", geom, field, required=False, minimum=0.0, strict=False)
    sigma = sigma or tuple(0.0 for _ in geom.shape)
    truncate = _truncate(msg, field)
    if p:
        _check_reach([truncate * s for s in sigma], f"{field}.{p[-1].name}",
                     f"a Laplacian of Gaussian of this sigma (truncated at {truncate:g} sigma)")
    kw, pm = _neighbourhood(msg, field)
    name = "laplacian of gaussian" if any(sigma) else "laplacian"
    p = p or (Param("sigma", sigma, unit="voxel"),)
    if any(sigma):
        p += (Param("truncate", (truncate,), unit="sigma"),)
    return ResolvedOp(name, "laplacian", (sigma,), dict(truncate=truncate, **kw),
                      params=p + pm), geom


def _gradient(msg, geom, operands, field):
    axis = _axis(msg.axis, geom.ndim, f"{field}.axis")
    order = msg.order or 1
    if order not in (1, 2):
        raise InvalidArgument(f"expected 1 or 2, got {order}", f"{field}.order")
    if msg.per_mm:
        _need_spacing(geom, f"{field}.per_mm")
    kw, pm = _neighbourhood(msg, field)
    unit = "per mm" if msg.per_mm else "per voxel"
    return ResolvedOp("gradient", "gradient", (axis,),
                      dict(order=order, spacing=geom.spacing if msg.per_mm else None,
                           per_mm=msg.per_mm, **kw),
                      params=(Param("axis", (axis,)), Param("order", (order,)),
                              Param("result", text=unit)) + pm), geom


def _edge(msg, geom, operands, field):
    operator = _enum(EDGE_OPERATORS, msg, "operator", field)
    axes = tuple(_axis(a, geom.ndim, f"{field}.axes") for a in msg.axes) or None
    if axes is not None and len(set(axes)) != len(axes):
        raise InvalidArgument(f"axes repeat: {list(msg.axes)}", f"{field}.axes")
    kw, pm = _neighbourhood(msg, field)
    shown = axes if axes is not None else tuple(range(geom.ndim))
    return ResolvedOp("edge", "edge", (operator,), dict(axes=axes, **kw),
                      params=(Param("operator", text=operator), Param("axes", shown)) + pm), geom


def _cutoff(msg, base: str, geom: Geometry, field: str):
    has_vox, has_mm = msg.HasField(base), msg.HasField(base + "_mm")
    if has_vox and has_mm:
        raise InvalidArgument(f"give {base} or {base}_mm, not both", f"{field}.{base}_mm")
    if has_vox:
        value = _finite(getattr(msg, base), f"{field}.{base}", minimum=0.0, strict=True)
        return tuple(value for _ in geom.shape), (Param(base, (value,), unit="voxel"),)
    if has_mm:
        name = f"{field}.{base}_mm"
        value = _finite(getattr(msg, base + "_mm"), name, minimum=0.0, strict=True)
        spacing = _need_spacing(geom, name)
        vox = _to_voxels([value] * len(spacing), spacing, name)
        return vox, (Param(base, vox, unit="voxel"), Param(base + "_mm", (value,), unit="mm"))
    return None, ()


def _bandpass(msg, geom, operands, field):
    low, pl = _cutoff(msg, "low_cutoff", geom, field)
    high, ph = _cutoff(msg, "high_cutoff", geom, field)
    if low is None and high is None:
        raise InvalidArgument("give low_cutoff and/or high_cutoff (voxels or _mm)",
                              f"{field}.low_cutoff")
    if low is not None and high is not None and any(lo >= hi for lo, hi in zip(low, high)):
        raise InvalidArgument("low_cutoff must be smaller than high_cutoff", f"{field}.high_cutoff")
    method = _enum(BANDPASS_METHODS, msg, "method", field)
    order = msg.order or 2
    kw, pm = _neighbourhood(msg, field)
    params = pl + ph + (Param("method", text=method),)
    kwargs = {"method": method, **kw}
    if method == "butterworth":
        # The image is padded with `mode` before the FFT, so the mode is reported too.
        kwargs["order"] = order
        params += (Param("order", (order,)),) + pm
    else:
        kwargs["truncate"] = _truncate(msg, field)
        params += (Param("truncate", (kwargs["truncate"],), unit="sigma"),) + pm
        given = ph or pl
        _check_reach([kwargs["truncate"] * gaussian_sigma_for_cutoff(c) for c in high or low],
                     f"{field}.{given[-1].name}",
                     f"a difference of Gaussians for this cutoff (truncated at "
                     f"{kwargs['truncate']:g} sigma)")
    return ResolvedOp("bandpass", "bandpass", (low, high), kwargs, params=params), geom


def _slab_length(msg, base: str, geom: Geometry, axis: int, field: str) -> int | None:
    """Whole voxels from ``base`` (voxels, must be whole) or ``base_mm`` (rounded, >= 1)."""
    has_vox, has_mm = msg.HasField(base), msg.HasField(base + "_mm")
    if has_vox and has_mm:
        raise InvalidArgument(f"give {base} or {base}_mm, not both", f"{field}.{base}_mm")
    if has_vox:
        value = _finite(getattr(msg, base), f"{field}.{base}", minimum=1.0)
        if value != int(value):
            raise InvalidArgument(f"must be whole voxels, got {value:g} (or give {base}_mm)",
                                  f"{field}.{base}")
        return int(value)
    if has_mm:
        name = f"{field}.{base}_mm"
        value = _finite(getattr(msg, base + "_mm"), name, minimum=0.0, strict=True)
        [voxels] = _to_voxels([value], [_need_spacing(geom, name)[axis]], name)
        return max(1, round(voxels))
    return None


def _project(msg, geom, operands, field):
    kind = _enum(PROJECTIONS, msg, "kind", field)
    axis = _axis(msg.axis, geom.ndim, f"{field}.axis")
    thickness = _slab_length(msg, "thickness", geom, axis, field)
    step = _slab_length(msg, "step", geom, axis, field)
    name = "mip" if kind == "max" else f"{kind} projection"
    n = geom.shape[axis]
    params = [Param("kind", text=kind), Param("axis", (axis,))]
    spacing = geom.spacing
    if thickness is None:
        if step is not None:
            raise InvalidArgument("step needs a slab thickness", f"{field}.step")
        if geom.ndim < 2:
            raise InvalidArgument("a 1-D image cannot be projected", f"{field}.axis")
        shape = geom.shape[:axis] + geom.shape[axis + 1:]
        spacing = projected_spacing(spacing, axis)
    else:
        t = thickness
        s = step if step is not None else t
        if t > n:
            raise InvalidArgument(f"slab of {t} voxels is thicker than the axis ({n} voxels)",
                                  f"{field}.thickness")
        thickness, step = t, s
        shape = geom.shape[:axis] + (slab_count(n, t, s),) + geom.shape[axis + 1:]
        spacing = projected_spacing(spacing, axis, t, s)
        params += [Param("thickness", (t,), unit="voxel"), Param("step", (s,), unit="voxel")]
    kwargs = dict(kind=kind, axis=axis, thickness=thickness, step=step)
    return ResolvedOp(name, "project", (), kwargs, params=tuple(params)), Geometry(shape, spacing)


def _projected_shape(op: ResolvedOp, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``project``'s result for an image of ``shape`` (as resolved above)."""
    axis, thickness = op.kwargs["axis"], op.kwargs["thickness"]
    if thickness is None:
        return shape[:axis] + shape[axis + 1:]
    return shape[:axis] + (slab_count(shape[axis], thickness, op.kwargs["step"]),) + \
        shape[axis + 1:]


def shapes_seen(ops: Sequence[ResolvedOp], shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shape of the image each resolved operation is given, in order."""
    seen = []
    for op in ops:
        seen.append(shape)
        if op.kernel == "project":
            shape = _projected_shape(op, shape)
    return seen


def _check_operand(msg, geom, operands, field, *, allow_mask_frame: bool):
    if allow_mask_frame and msg.HasField("mask_frame"):
        if geom.ndim < 2 or msg.mask_frame >= geom.shape[0]:
            raise InvalidArgument(
                f"frame {msg.mask_frame} does not exist (the image has "
                f"{geom.shape[0] if geom.ndim >= 2 else 0} frames along axis 0)",
                f"{field}.mask_frame")
        return None, (Param("mask_frame", (msg.mask_frame,)),)
    if msg.operand >= len(operands):
        raise InvalidArgument(
            f"operand {msg.operand} does not exist: the request has {len(operands)} operand "
            "image(s) in header.operands" + (" (or set mask_frame)" if allow_mask_frame else ""),
            f"{field}.operand")
    other = operands[msg.operand]
    if other.shape != geom.shape and other.shape != geom.shape[1:]:
        raise InvalidArgument(
            f"operand shape {other.shape} does not match the image {geom.shape} "
            f"(expected {geom.shape}" + (f" or one frame {geom.shape[1:]})" if geom.ndim > 1
                                         else ")"), f"{field}.operand")
    return msg.operand, (Param("operand", (msg.operand,)),)


def _weight(msg, field):
    return _finite(msg.weight, f"{field}.weight") if msg.HasField("weight") else 1.0


def _subtract(msg, geom, operands, field):
    operand, p = _check_operand(msg, geom, operands, field, allow_mask_frame=True)
    weight = _weight(msg, field)
    kwargs = dict(weight=weight, logarithmic=msg.logarithmic)
    if operand is None:
        kwargs["mask_frame"] = msg.mask_frame
    params = p + (Param("weight", (weight,)),
                  Param("logarithmic", text=str(msg.logarithmic).lower()))
    return ResolvedOp("subtract", "subtract", (), kwargs, operand=operand, params=params), geom


def _add(msg, geom, operands, field):
    operand, p = _check_operand(msg, geom, operands, field, allow_mask_frame=False)
    weight = _weight(msg, field)
    return ResolvedOp("add", "add", (), dict(weight=weight), operand=operand,
                      params=p + (Param("weight", (weight,)),)), geom


def _package(msg, geom, operands, field):
    """An approved package's operation: its parameters checked against those it declares,
    absent ones given their defaults; the op carries what the worker needs to run it."""
    if not msg.package:
        raise InvalidArgument("required: the name of an approved software package",
                              f"{field}.package")
    row = APPROVED.find(msg.package, msg.version, field)
    ops = {o["name"]: o for o in row.operations}
    spec = ops.get(msg.operation)
    if spec is None:
        raise InvalidArgument(f"{row.name} {row.version} has no operation "
                              f"{msg.operation!r}; it has {', '.join(sorted(ops))}",
                              f"{field}.operation")
    declared = {p["name"]: p for p in spec["parameters"]}
    for name in sorted(msg.params):
        if name not in declared:
            raise InvalidArgument(f"{msg.operation} takes "
                                  f"{', '.join(declared) or 'no parameters'}",
                                  f"{field}.params[{name}]")
        _finite(msg.params[name], f"{field}.params[{name}]")
    values = {n: float(msg.params[n]) if n in msg.params else float(p["default"])
              for n, p in declared.items()}
    limits = APPROVED.limits
    run = PackageRun(row.name, row.version, row.sha256, msg.operation, values,
                     APPROVED.wheel(row.sha256), limits.memory_bytes, limits.seconds,
                     fee=row.fee_per_use)
    params = tuple(Param(n, (v,), unit=declared[n]["unit"]) for n, v in values.items()) + (
        Param("package", text=row.name), Param("version", text=row.version),
        Param("sha256", text=row.sha256))
    return ResolvedOp(msg.operation, "package", (run,), params=params), geom


_RESOLVERS = {
    "gaussian": _gaussian,
    "mean": _box("mean"),
    "median": _box("median"),
    "laplacian": _laplacian,
    "gradient": _gradient,
    "edge": _edge,
    "bandpass": _bandpass,
    "project": _project,
    "subtract": _subtract,
    "add": _add,
    "package": _package,
}


def _unknown(msg) -> list[int]:
    """Field numbers in ``msg`` that this server's schema does not have."""
    return [f.field_number for f in unknown_fields.UnknownFieldSet(msg)]


def resolve_pipeline(pipeline: Sequence, image: Geometry, operands: Sequence[Geometry] = (),
                     field: str = "header.pipeline") -> tuple[list[ResolvedOp], Geometry]:
    """Resolve each operation against the image it will see.

    Returns the resolved operations and the geometry of the result.
    """
    if not pipeline:
        raise InvalidArgument("the pipeline is empty; give at least one operation", field)
    resolved, geom = [], image
    for i, op in enumerate(pipeline):
        name = op.WhichOneof("op")
        where = f"{field}[{i}]"
        if op.HasField("package"):
            if name is not None:
                raise InvalidArgument(f"give one operation: {name} or package, not both",
                                      f"{where}.package")
            name = "package"
        if name is None:
            unknown = _unknown(op)
            what = f"an operation this server does not know (field {unknown[0]})" if unknown \
                else "no operation"
            raise InvalidArgument(f"{what}; expected one of {', '.join(_RESOLVERS)}", where)
        msg = getattr(op, name)
        if unknown := _unknown(msg):
            known = ", ".join(f.name for f in msg.DESCRIPTOR.fields)
            raise InvalidArgument(f"unknown parameter (field number {unknown[0]}); {name} takes "
                                  f"{known}", f"{where}.{name}")
        r, geom = _RESOLVERS[name](msg, geom, operands, f"{where}.{name}")
        resolved.append(r)
    return resolved, geom
