"""What a processing request means, checked once for every door (gRPC, DICOM routing
rules): the domain's one validator. What is about the wire (enum numbers, oneofs,
descriptors) was checked by the API layer before the request was made.

Fields are relative to the request (requests.py).
"""

from __future__ import annotations

import math

import numpy as np

from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.jobs.requests import ProcessRequest, RegionRef

__all__ = ["check_template", "check_request", "check_size", "check_inline",
           "check_output_geometry", "check_regions"]


def check_template(request: ProcessRequest) -> None:
    """What holds of a request before its input is known (a routing rule's)."""
    if not request.pipeline:
        raise InvalidArgument("expected at least one operation", "pipeline")
    if request.input is not None or request.operands:
        raise InvalidArgument("leave it empty: the received series is the input", "input")


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
        _within(given, input_size, "input_region")
    out = request.output_region
    if out is not None:
        if request.output_format != "raw":
            raise InvalidArgument("a result in a shared-memory region is a RAW array",
                                  "output_format")
        if any(e.encoding != "raw" or e.stored is not None for e in request.expected):
            raise InvalidArgument("a result in a shared-memory region needs RAW images "
                                  "sent with the request (its size is checked first)",
                                  "output_region")
        _within(out, output_size, "output_region")
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


def _within(ref: RegionRef, size: int, field: str) -> None:
    if ref.offset + ref.length > size:
        raise InvalidArgument(
            f"offset {ref.offset} + length {ref.length} = {ref.offset + ref.length} runs "
            f"past the region's {size} bytes", f"{field}.offset")
