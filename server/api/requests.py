"""Wire headers -> domain requests, and the domain's error fields -> the wire's.

The checks here are about the wire: enum numbers, which member of a oneof is set, image
descriptors. What a request means is checked in the domain (jobs/validate.py), the same
for every door. The domain names its error fields relative to its request; a
:class:`Fields` puts them in place in one wire message, once per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, processing_pb2
from medcompute.server.api.transport import expect_image
from medcompute.server.errors import InvalidArgument, Moves, named, renamed
from medcompute.server.jobs.requests import ProcessRequest, RegionRef, SubmitRequest
from medcompute.server.storage.spool import ExpectedImage

__all__ = ["Fields", "HEADER", "BATCH", "SUBMIT_BATCH", "process_request", "submit_request",
           "image_source", "DEVICES", "FORMATS", "MAX_ID_CHARS", "INT_MAX", "READ_APART",
           "check_ranges", "region_ref", "region_refs"]

#: The longest id a request may carry (image, job, rule and key ids are 32 characters):
#: a longer one is refused with INVALID_ARGUMENT before anything looks it up.
MAX_ID_CHARS = 256
#: The largest integer a request may carry: SQLite keeps 64-bit signed integers.
INT_MAX = 2**63 - 1

_F = FieldDescriptor
_INTS = (_F.TYPE_UINT64, _F.TYPE_INT64, _F.TYPE_FIXED64, _F.TYPE_SFIXED64, _F.TYPE_SINT64)
_FLOATS = (_F.TYPE_DOUBLE, _F.TYPE_FLOAT)


def _is_id(name: str) -> bool:
    return name.endswith("_id") or name.endswith("_ids")


def _check_value(fd, value, field: str) -> None:
    if fd.type in _INTS and not -INT_MAX - 1 <= value <= INT_MAX:
        raise InvalidArgument(f"expected at most {INT_MAX} (2**63 - 1), got {value}", field)
    if fd.type in _FLOATS and not math.isfinite(value):
        raise InvalidArgument(f"must be finite, got {value}", field)
    if fd.type == _F.TYPE_STRING and _is_id(fd.name) and len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"expected an id of at most {MAX_ID_CHARS} characters, got "
                              f"{len(value)}", field)


#: Parts of a streamed request's header checked where they are read, with messages of
#: their own: the pipeline (operations.py) and inline image descriptors (transport.py).
READ_APART = frozenset({"pipeline", "inline"})


def check_ranges(message, prefix: str = "", *, skip: frozenset = frozenset()) -> None:
    """Every field of a request in the range the server can use, before any of it is:
    64-bit integers SQLite can hold, finite floats, ids of at most :data:`MAX_ID_CHARS`
    characters; nested messages too (but those named in ``skip``). InvalidArgument names
    the first field that is not."""
    for fd, value in message.ListFields():
        if fd.name in skip:
            continue
        field = f"{prefix}.{fd.name}" if prefix else fd.name
        repeated = fd.is_repeated
        values = list(value) if repeated else [value]
        if fd.type == _F.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                continue
            for i, item in enumerate(values):
                check_ranges(item, f"{field}[{i}]" if repeated else field, skip=skip)
            continue
        for i, item in enumerate(values):
            _check_value(fd, item, f"{field}[{i}]" if repeated else field)

# The zero values (*_UNSPECIFIED) are the documented defaults: AUTO and RAW.
DEVICES = {processing_pb2.DEVICE_UNSPECIFIED: "auto", processing_pb2.DEVICE_AUTO: "auto",
           processing_pb2.DEVICE_GPU: "gpu", processing_pb2.DEVICE_CPU: "cpu"}
FORMATS = {processing_pb2.OUTPUT_FORMAT_UNSPECIFIED: "raw",
           processing_pb2.OUTPUT_FORMAT_RAW: "raw",
           processing_pb2.OUTPUT_FORMAT_DICOM_SERIES: "dicom_series",
           processing_pb2.OUTPUT_FORMAT_DICOM_FILE: "dicom_file"}


def image_source(source, field: str, *, max_bytes: int) -> ExpectedImage:
    """An ``ImageSource`` (at ``field``, relative to the request) as an ExpectedImage: an
    inline descriptor checked, or a stored image's id (looked up by the domain)."""
    kind = source.WhichOneof("source")
    if kind == "image_id":
        if not source.image_id:
            raise InvalidArgument("required: the id of a stored image, as Register "
                                  "returned it; got an empty string", f"{field}.image_id")
        check_ranges(source, field)
        return ExpectedImage(f"{field}.image_id", "stored", 0, stored=source.image_id,
                             version=source.version)
    if source.version:
        raise InvalidArgument("a version is one of a stored image: give image_id, or "
                              "leave version empty", f"{field}.version")
    if kind != "inline":
        raise InvalidArgument("expected an image: set inline (a descriptor; the pixels "
                              "follow as chunks) or image_id (a stored image)", field)
    return expect_image(source.inline, f"{field}.inline", max_bytes=max_bytes)


def region_ref(header, name: str) -> RegionRef | None:
    """The ``SharedRegion`` at ``name`` of the message (a ProcessHeader, a store
    GetRequest), if set."""
    if not header.HasField(name):
        return None
    return _region(getattr(header, name), name)


def region_refs(regions, name: str, count: int) -> tuple[RegionRef | None, ...]:
    """A batch's repeated ``SharedRegion`` ``name``: one per image, or none (every
    image's entry None)."""
    if not regions:
        return (None,) * count
    if len(regions) != count:
        raise InvalidArgument(f"expected one region per image of inputs ({count}), or none; "
                              f"got {len(regions)}", name)
    return tuple(_region(r, f"{name}[{i}]") for i, r in enumerate(regions))


def _region(region: processing_pb2.SharedRegion, name: str) -> RegionRef:
    if not region.region_id:
        raise InvalidArgument("required: the id RegisterRegion returned",
                              f"{name}.region_id")
    if not region.length:
        raise InvalidArgument("expected the bytes of the region to use, more than 0",
                              f"{name}.length")
    return RegionRef(region.region_id, region.offset, region.length)


def process_request(header: processing_pb2.ProcessHeader, *, max_image_bytes: int,
                    template: bool = False, regions: bool = False) -> ProcessRequest:
    """The domain's request for a ``ProcessHeader``; field paths relative to it.

    ``template``: a request whose input comes later (a batch's, a routing rule's): its
    ``input`` is not read. ``regions``: the call may name shared-memory regions (a
    synchronous Process call's).
    """
    input_region = region_ref(header, "input_region")
    output_region = region_ref(header, "output_region")
    if not regions and (input_region or output_region):
        raise InvalidArgument("shared-memory regions are for Process calls: send the "
                              "images as chunks",
                              "input_region" if input_region else "output_region")
    if input_region is not None and header.input.WhichOneof("source") != "inline":
        raise InvalidArgument("describe the image in the region with input.inline (a RAW "
                              "descriptor)", "input.inline")
    image = None
    if not template:
        image = image_source(header.input, "input", max_bytes=max_image_bytes)
    operands = tuple(image_source(s, f"operands[{i}]", max_bytes=max_image_bytes)
                     for i, s in enumerate(header.operands))
    device = DEVICES.get(header.device)
    if device is None:
        raise InvalidArgument(wire.enum_choices(processing_pb2.Device, header.device), "device")
    output_format = FORMATS.get(header.output_format)
    if output_format is None:
        raise InvalidArgument(wire.enum_choices(processing_pb2.OutputFormat,
                                                header.output_format), "output_format")
    out_code = header.output_dtype or image_pb2.DATA_TYPE_FLOAT32
    try:
        output_dtype = wire.dtype_from_proto(out_code, "output_dtype").name
    except wire.WireError as exc:
        raise InvalidArgument(exc.message, exc.field) from None
    compute_code = header.compute_dtype or image_pb2.DATA_TYPE_FLOAT32
    if compute_code not in (image_pb2.DATA_TYPE_FLOAT32, image_pb2.DATA_TYPE_FLOAT64):
        raise InvalidArgument(wire.enum_choices(
            image_pb2.DataType, compute_code,
            (image_pb2.DATA_TYPE_FLOAT32, image_pb2.DATA_TYPE_FLOAT64)), "compute_dtype")
    if header.result_compression not in image_pb2.Compression.values():
        raise InvalidArgument(wire.enum_choices(image_pb2.Compression,
                                                header.result_compression),
                              "result_compression")
    return ProcessRequest(
        pipeline=tuple(header.pipeline), input=image, operands=operands, device=device,
        allow_fallback=header.allow_fallback, output_format=output_format,
        output_dtype=output_dtype, compute_dtype=wire.DTYPES[compute_code].name,
        result_compression=header.result_compression, store_result=header.store_result,
        recompute=header.recompute, retention_seconds=header.retention_seconds,
        input_region=input_region, output_region=output_region)


def process_header(request: ProcessRequest) -> processing_pb2.ProcessHeader:
    """The ``ProcessHeader`` of a request without its images (a routing rule's)."""
    return processing_pb2.ProcessHeader(
        pipeline=list(request.pipeline), device=_ENUM_OF[request.device],
        allow_fallback=request.allow_fallback,
        output_format=_ENUM_OF_FORMAT[request.output_format],
        output_dtype=wire.dtype_to_proto(request.output_dtype),
        compute_dtype=wire.dtype_to_proto(request.compute_dtype),
        result_compression=request.result_compression, store_result=request.store_result,
        recompute=request.recompute, retention_seconds=request.retention_seconds)


_ENUM_OF = {"auto": processing_pb2.DEVICE_AUTO, "gpu": processing_pb2.DEVICE_GPU,
            "cpu": processing_pb2.DEVICE_CPU}
_ENUM_OF_FORMAT = {name: code for code, name in FORMATS.items() if code}


def submit_request(submit, *, max_image_bytes: int, template: bool = False) -> SubmitRequest:
    """The domain's request for a ``SubmitHeader``; field paths relative to it."""
    if not submit.HasField("process"):
        raise InvalidArgument("expected the processing request (pipeline, input, ...)",
                              "process")
    with named("process"):
        process = process_request(submit.process, max_image_bytes=max_image_bytes,
                                  template=template)
    return SubmitRequest(process, idempotency_key=submit.idempotency_key,
                         label=submit.label, destination=submit.destination)


@dataclass(frozen=True)
class Fields:
    """Where a domain request's fields sit in one wire message: under ``parent``, except
    those under the first path of one of ``moves`` (see
    :func:`medcompute.server.errors.within`)."""

    parent: str = "header"
    moves: Moves = ()

    def place(self, exc: BaseException) -> BaseException:
        """Name ``exc``'s field in the wire message (once: the call's last word)."""
        return renamed(exc, self.parent, self.moves)

    def placed(self):
        """Errors raised inside name their fields in the wire message."""
        return named(self.parent, self.moves)


#: Process and Submit: every field of the request is one of the header.
HEADER = Fields("header")
#: ProcessBatch: the images are header.inputs[i] (their regions header.input_regions[i]
#: and header.output_regions[i]), the rest is the shared header.process.
BATCH = Fields("header.process", (("inputs", "header.inputs"),
                                  ("input_regions", "header.input_regions"),
                                  ("output_regions", "header.output_regions")))
#: SubmitBatch: the images are header.inputs[i], the rest is under header.submit.
SUBMIT_BATCH = Fields("header.submit", (("inputs", "header.inputs"),))
