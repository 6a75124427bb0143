"""A processing request's header and message stream, from images and operations: what
``Client.process``, ``Client.submit`` and the batch calls send."""

from __future__ import annotations

from medcompute.client.calls import (
    _COMPRESSION,
    _payload,
    _progress,
    _source,
)
from medcompute.client.io import LocalImage, read_input
from medcompute.client.ops import to_operation
from medcompute.client.store import stored_id
from medcompute.proto import wire
from medcompute.proto.v1 import processing_pb2

_DEVICES = {"auto": processing_pb2.DEVICE_AUTO, "gpu": processing_pb2.DEVICE_GPU,
            "cpu": processing_pb2.DEVICE_CPU}
_OUTPUTS = {"array": processing_pb2.OUTPUT_FORMAT_RAW,
            "dicom_series": processing_pb2.OUTPUT_FORMAT_DICOM_SERIES,
            "dicom_file": processing_pb2.OUTPUT_FORMAT_DICOM_FILE}
_PRIORITIES = {"low": processing_pb2.PRIORITY_LOW, "normal": processing_pb2.PRIORITY_NORMAL,
               "high": processing_pb2.PRIORITY_HIGH}


def _read(image, spacing=None) -> LocalImage | str:
    """A local image, or the id of a stored one (``"id:ID"`` or a StoredImage)."""
    image_id = stored_id(image)
    if image_id is not None and spacing is not None:
        raise ValueError("spacing: a stored image keeps the spacing it was registered with")
    return image_id if image_id is not None else read_input(image, spacing)


def _header(image, ops, *, spacing, operands, device, output_dtype, compute_dtype, output,
            compression, allow_fallback, store_result, retention, recompute,
            priority="normal"):
    if device not in _DEVICES:
        raise ValueError(f"device: expected one of {', '.join(_DEVICES)}, got {device!r}")
    if output not in _OUTPUTS:
        raise ValueError(f"output: expected one of {', '.join(_OUTPUTS)}, got {output!r}")
    if compression not in _COMPRESSION:
        raise ValueError(f"compression: expected one of {', '.join(_COMPRESSION)}, "
                         f"got {compression!r}")
    if priority not in _PRIORITIES:
        raise ValueError(f"priority: expected one of {', '.join(_PRIORITIES)}, "
                         f"got {priority!r}")
    codec = _COMPRESSION[compression]
    images = [_read(image, spacing)] + [_read(o) for o in operands]
    header = processing_pb2.ProcessHeader(
        pipeline=[to_operation(op) for op in ops],
        input=_source(images[0], codec), operands=[_source(i, codec) for i in images[1:]],
        device=_DEVICES[device], output_dtype=wire.dtype_to_proto(output_dtype),
        compute_dtype=wire.dtype_to_proto(compute_dtype), output_format=_OUTPUTS[output],
        result_compression=codec, allow_fallback=allow_fallback,
        store_result=store_result, retention_seconds=round(retention or 0),
        recompute=recompute,
        priority=_PRIORITIES[priority] if priority != "normal" else 0,
    )
    return header, images


def _messages(header, images, message_type, progress: bool, codec: int):
    """The request stream: the header message, then every inline image's chunks."""
    sent = _progress(sum(i.nbytes for i in images if not isinstance(i, str)), "upload",
                     progress)
    yield message_type(header=header)
    for index, img in enumerate(images):
        if isinstance(img, str):
            continue   # a stored image: the server has it
        for payload in _payload(img, codec):
            yield wire.chunk_message(message_type, payload, index=index)
            if sent is not None:
                sent.update(min(len(payload), wire.CHUNK_SIZE))
    if sent is not None:
        sent.close()
