"""What a processing request means, checked once for every door (gRPC, DICOM routing
rules): the domain's one validator. What is about the wire (enum numbers, oneofs,
descriptors) was checked by the API layer before the request was made.

Fields are relative to the request (requests.py).
"""

from __future__ import annotations

import math

from medcompute.server.errors import InvalidArgument, ResourceExhausted
from medcompute.server.jobs.operations import Geometry, resolve_pipeline
from medcompute.server.jobs.requests import ProcessRequest

__all__ = ["check_template", "check_request", "check_size", "check_inline",
           "check_output_geometry"]


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
