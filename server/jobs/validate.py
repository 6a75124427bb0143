"""What a processing request means, checked once for every door (gRPC, DICOM routing
rules): the domain's one validator. What is about the wire (enum numbers, oneofs,
descriptors) was checked by the API layer before the request was made.

Fields are relative to the request (requests.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medcompute.kernels import working_memory
from medcompute.server.dispatch.placement import BYTES_PER_VOXEL
from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.jobs.operations import (
    Geometry,
    ResolvedOp,
    resolve_pipeline,
    shapes_seen,
)
from medcompute.server.jobs.requests import ProcessRequest, RegionRef

__all__ = ["check_template", "check_request", "check_size", "check_inline",
           "check_output_geometry", "check_memory", "piece_shape", "check_regions",
           "within_region"]

#: The parameter whose value makes an operation's working memory grow beyond the image's:
#: the one a refusal names (an operation without one is named itself).
_DRIVER = {"median": "size", "mean": "size", "gaussian": "sigma", "laplacian": "sigma",
           "bandpass": "high_cutoff"}


#: The images a template's pipeline is resolved against, its input being unknown: a
#: received series (3 axes), a single frame (2), a multi-frame series (4); each axis long
#: enough for any slab, 1 mm voxels. Its parameters are checked as a request's are; what
#: depends on the real image (its size, an axis it lacks) is checked when one arrives.
TEMPLATE_IMAGES = tuple(Geometry((1 << 16,) * n, (1.0,) * n) for n in (3, 2, 4))


def check_template(request: ProcessRequest) -> None:
    """What holds of a request before its input is known (a routing rule's): its
    pipeline resolves, as a request's does, for a series, a frame or a multi-frame series.
    """
    if not request.pipeline:
        raise InvalidArgument("expected at least one operation", "pipeline")
    if request.input is not None or request.operands:
        raise InvalidArgument("leave it empty: the received series is the input", "input")
    first = None
    for image in TEMPLATE_IMAGES:
        try:
            resolve_pipeline(request.pipeline, image, field="pipeline")
            return
        except InvalidArgument as exc:
            first = first or exc
    raise first


def check_request(request: ProcessRequest) -> None:
    """What holds of a request whose stored images are looked up (before any pixel)."""
    if request.output_format != "raw" and request.input.encoding != "dicom":
        raise InvalidArgument("DICOM output needs DICOM input (the derived series copies "
                              "the source's patient and study)", "output_format")


def check_size(shape, field: str, *, max_voxels: int) -> None:
    voxels = math.prod(shape)
    if voxels > max_voxels:
        raise ResourceExhausted(f"the image has {voxels} voxels; this server accepts at "
                                f"most {max_voxels}", field)


def check_inline(request: ProcessRequest, *, max_voxels: int) -> None:
    """Fail fast: RAW images are checked against the limits and the pipeline before
    their pixels are read."""
    if all(e.encoding == "raw" for e in request.expected):
        for e in request.expected:
            check_size(e.shape, f"{e.field}.shape", max_voxels=max_voxels)
        geoms = [Geometry(e.shape, e.spacing) for e in request.expected]
        resolve_pipeline(request.pipeline, geoms[0], geoms[1:], field="pipeline")


def check_output_geometry(request: ProcessRequest, out_geom: Geometry) -> None:
    if request.output_format != "raw" and len(out_geom.shape) not in (2, 3):
        # Refused here, before any work, rather than by the worker that writes it.
        raise InvalidArgument(
            f"a DICOM result needs 2 or 3 axes; this pipeline gives "
            f"{len(out_geom.shape)} (use the array output)", "output_format")


def piece_shape(shape: tuple[int, ...], op: ResolvedOp, budget: int) -> tuple[int, ...]:
    """The largest part of an image of ``shape`` a worker holds at once for ``op``: the
    whole image, or, when the image's arrays exceed half a worker's memory, the slab the
    dispatcher cuts along axis 0 (placement.slab_count), with the halo of a window op."""
    voxels = math.prod(shape)
    pieces = math.ceil(voxels * BYTES_PER_VOXEL / (budget / 2))
    if pieces < 2 or len(shape) < 2:
        return shape
    reach = op.args[0][0] // 2 if op.kernel in ("mean", "median") else 0
    return (min(shape[0], math.ceil(shape[0] / pieces) + 2 * reach),) + shape[1:]


def _driver_field(op: ResolvedOp, where: str) -> str:
    base = _DRIVER.get(op.kernel)
    names = (base, base + "_mm", "low_cutoff", "low_cutoff_mm") if base else ()
    # The last one given: the length in mm when the caller gave mm; a high cutoff first.
    given = [p.name for p in op.params if p.name in names]
    return f"{where}.{op.kernel}.{given[-1]}" if given else f"{where}.{op.kernel}"


def check_memory(ops: Sequence[ResolvedOp], image: Geometry, *, compute_dtype: str,
                 budget: int, field: str = "pipeline") -> None:
    """RESOURCE_EXHAUSTED, naming the parameter, when an operation's working memory
    (kernels.working_memory, on the part of the image a worker holds at once) exceeds
    ``budget``, a worker's memory in bytes: refused before a task starts, rather than a
    worker killed for it."""
    for i, (op, shape) in enumerate(zip(ops, shapes_seen(ops, image.shape))):
        if op.kernel == "package":
            continue         # limited by its sandbox's own memory limit (worker/packages.py)
        need = working_memory(op.kernel, piece_shape(shape, op, budget), *op.args,
                              dtype=compute_dtype, **op.kwargs)
        if need > budget:
            raise ResourceExhausted(
                f"{op.summary} on an image of {'x'.join(map(str, shape))} voxels needs about "
                f"{_gib(need)} of working memory; a task may use {_gib(budget)} of a "
                "worker's memory (--worker-memory): use a smaller value",
                _driver_field(op, f"{field}[{i}]"))


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def check_regions(request: ProcessRequest, *, input_size: int | None,
                  output_size: int | None) -> None:
    """What holds of a request that names shared-memory regions (``input_size``,
    ``output_size``: the bytes of the regions it names), before any job: the input is a
    RAW image of exactly ``input_region.length`` bytes, each part lies within its region,
    and the output region holds the whole result (when the pipeline fits the images:
    else the job fails as any job whose pipeline does not fit)."""
    if request.input_region is None and request.output_region is None:
        return
    if request.store_result:
        raise InvalidArgument("a result kept in the store does not use shared memory: "
                              "leave store_result false, or send the image as chunks",
                              "store_result")
    given = request.input_region
    if given is not None:
        image = request.input
        if request.operands:
            raise InvalidArgument("a request whose input is in a shared-memory region "
                                  "takes no operands (send them all as chunks)", "operands")
        if image.encoding != "raw":
            raise InvalidArgument("the image in a shared-memory region is a RAW array",
                                  "input.inline.encoding")
        if given.length != image.size:
            raise InvalidArgument(
                f"expected the input's {image.size} bytes (its shape times its dtype's "
                f"itemsize), got {given.length}", "input_region.length")
        within_region(given, input_size, "input_region")
    out = request.output_region
    if out is not None:
        if request.output_format != "raw":
            raise InvalidArgument("a result in a shared-memory region is a RAW array",
                                  "output_format")
        if any(e.encoding != "raw" or e.stored is not None for e in request.expected):
            raise InvalidArgument("a result in a shared-memory region needs RAW images "
                                  "sent with the request (its size is checked first)",
                                  "output_region")
        within_region(out, output_size, "output_region")
    if out is not None:
        geoms = [Geometry(e.shape, e.spacing) for e in request.expected]
        try:
            _, result = resolve_pipeline(request.pipeline, geoms[0], geoms[1:],
                                         field="pipeline")
        except (InvalidArgument, ResourceExhausted):
            return      # the job refuses its pipeline, as any job's (check_inline)
        need = math.prod(result.shape) * np.dtype(request.output_dtype).itemsize
        if out.length < need:
            shape = "x".join(str(n) for n in result.shape)
            raise InvalidArgument(
                f"the result ({shape} {request.output_dtype}) needs {need} bytes; the "
                f"region's part holds {out.length}", "output_region.length")


def within_region(ref: RegionRef, size: int, field: str) -> None:
    if ref.offset + ref.length > size:
        raise InvalidArgument(
            f"offset {ref.offset} + length {ref.length} = {ref.offset + ref.length} runs "
            f"past the region's {size} bytes", f"{field}.offset")
