"""What every client class shares, below them all: the default server, failed calls
as :class:`ServiceError`, the :class:`Result` of a processing call and its assembly from
chunks, and an image's descriptor and chunks on the way up."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from medcompute.client.io import LocalImage
from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, processing_pb2

__all__ = ["DEFAULT_SERVER", "ServiceError", "Result", "call", "field_violations"]

DEFAULT_SERVER = os.environ.get("MEDCOMPUTE_SERVER", "127.0.0.1:50051")

_COMPRESSION = {"none": image_pb2.COMPRESSION_NONE, "zstd": image_pb2.COMPRESSION_ZSTD,
                "blosc": image_pb2.COMPRESSION_BLOSC}


class ServiceError(Exception):
    """A call failed; ``code`` is the gRPC status code, ``details`` the server's message.

    ``violations`` are the ``google.rpc.BadRequest`` field violations the server sent in
    the status details, as (field, description) pairs; empty when it sent none.
    """

    def __init__(self, code: grpc.StatusCode, details: str,
                 violations: Sequence[tuple[str, str]] = ()):
        self.code = code
        self.details = details
        self.violations = list(violations)
        super().__init__(f"{code.name}: {details}")

    @classmethod
    def from_rpc(cls, exc: grpc.RpcError) -> ServiceError:
        """The ServiceError of a failed call, with the rich status details it carried."""
        return cls(exc.code(), exc.details() or "", field_violations(exc))


def field_violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) of each BadRequest field violation in ``exc``'s status."""
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, AttributeError):   # no status details, or not a call
        return []
    out = []
    for detail in status.details if status is not None else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with a failed RPC raised as :class:`ServiceError`."""
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as exc:
        raise ServiceError.from_rpc(exc) from None


@dataclass
class Result:
    """A processed image and what was done to produce it."""

    header: processing_pb2.ResultHeader
    array: np.ndarray | None = None
    files: list[bytes] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.header.job_id

    @property
    def applied(self) -> list[dict]:
        return [json_format.MessageToDict(a, preserving_proto_field_name=True)
                for a in self.header.applied]

    @property
    def usage(self) -> dict:
        return json_format.MessageToDict(self.header.usage, preserving_proto_field_name=True)

    @property
    def spacing(self) -> tuple[float, ...] | None:
        return tuple(self.header.output.spacing_mm) or None

    @property
    def stored_image_id(self) -> str:
        """The derived image the store keeps this result as ("" unless ``store_result``)."""
        return self.header.stored_image_id

    @property
    def reused(self) -> bool:
        """The store already held this result; nothing was computed."""
        return self.header.reused

    def to_dict(self) -> dict:
        """The result header as plain JSON-able data."""
        return json_format.MessageToDict(self.header, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)


def _descriptor(image: LocalImage, compression: int) -> image_pb2.ImageDescriptor:
    if image.array is not None:
        a = image.array
        desc = image_pb2.ImageDescriptor(
            encoding=image_pb2.ENCODING_RAW, shape=a.shape, dtype=wire.dtype_to_proto(a.dtype),
            size=a.nbytes, compression=compression, crc32=wire.crc32(a))
    else:
        crc = 0
        for blob in image.dicom:
            crc = wire.crc32(blob, crc)
        desc = image_pb2.ImageDescriptor(
            encoding=image_pb2.ENCODING_DICOM, file_sizes=[len(b) for b in image.dicom],
            size=sum(len(b) for b in image.dicom), compression=compression, crc32=crc)
    if image.spacing is not None:
        desc.spacing_mm.extend(float(s) for s in image.spacing)
    return desc


def _source(image: LocalImage | str, compression: int) -> image_pb2.ImageSource:
    if isinstance(image, str):   # "ID" or "ID@VERSION" (a compressed version of it)
        image_id, _, version = image.partition("@")
        return image_pb2.ImageSource(image_id=image_id, version=version)
    return image_pb2.ImageSource(inline=_descriptor(image, compression))


def _payload(image: LocalImage, compression: int) -> Iterator[bytes]:
    if image.array is not None:
        a = image.array
        yield from wire.iter_chunks(a, compression=compression, itemsize=a.dtype.itemsize)
    else:
        for blob in image.dicom:
            yield from wire.iter_chunks(blob, compression=compression)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                leave=False)


def _stream(stream):
    try:
        yield from stream
    except grpc.RpcError as exc:
        raise ServiceError.from_rpc(exc) from None
    finally:
        stream.cancel()


class _Assembly:
    """A result arriving in chunks: decoded, checked against its header, then built."""

    def __init__(self, header: processing_pb2.ResultHeader, progress: bool = False):
        self.header = header
        out = header.output
        self.buffer = bytearray(out.size)
        self.decoder = wire.ChunkDecoder(out.compression, "result")
        self.got = 0
        self.bar = _progress(out.size, "download", progress)

    def add(self, payload: bytes) -> None:
        data = self.decoder.decode(payload)
        if self.got + len(data) > self.header.output.size:
            raise ServiceError(grpc.StatusCode.DATA_LOSS, "the result is longer than declared")
        self.buffer[self.got:self.got + len(data)] = data
        self.got += len(data)
        if self.bar is not None:
            self.bar.update(len(data))

    def result(self) -> Result:
        header, buffer, got = self.header, self.buffer, self.got
        out = header.output
        if self.bar is not None:
            self.bar.close()
        if got != out.size:
            raise ServiceError(grpc.StatusCode.DATA_LOSS,
                               f"the result ended after {got} of {out.size} bytes")
        if out.HasField("crc32") and wire.crc32(buffer) != out.crc32:
            raise ServiceError(grpc.StatusCode.DATA_LOSS, "the result's checksum does not match")
        if out.encoding == image_pb2.ENCODING_RAW:
            dtype = wire.dtype_from_proto(out.dtype, "result.dtype")
            shape = tuple(out.shape)
            if math.prod(shape) * dtype.itemsize != got:
                raise ServiceError(grpc.StatusCode.DATA_LOSS, "the result's size does not match "
                                   "its shape")
            return Result(header, array=np.frombuffer(buffer, dtype=dtype).reshape(shape))
        files, at = [], 0
        view = memoryview(buffer)
        for n in out.file_sizes:
            files.append(bytes(view[at:at + n]))
            at += n
        return Result(header, files=files)
