"""The Python client: one class, a context manager, one exception type."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf import json_format

from medcompute.client.io import LocalImage, read_input
from medcompute.client.ops import to_operation
from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2, processing_pb2, processing_pb2_grpc

__all__ = ["Client", "Result", "ServiceError", "DEFAULT_SERVER"]

DEFAULT_SERVER = os.environ.get("MEDCOMPUTE_SERVER", "127.0.0.1:50051")
_MESSAGE_LIMIT = wire.MAX_MESSAGE_BYTES + (64 << 10)

_DEVICES = {"auto": processing_pb2.DEVICE_AUTO, "gpu": processing_pb2.DEVICE_GPU,
            "cpu": processing_pb2.DEVICE_CPU}
_OUTPUTS = {"array": processing_pb2.OUTPUT_RAW, "dicom_series": processing_pb2.OUTPUT_DICOM_SERIES,
            "dicom_file": processing_pb2.OUTPUT_DICOM_FILE}
_COMPRESSION = {"none": image_pb2.COMPRESSION_NONE, "zstd": image_pb2.ZSTD,
                "blosc": image_pb2.BLOSC}


class ServiceError(Exception):
    """A call failed; ``code`` is the gRPC status code, ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self.code = code
        self.details = details
        super().__init__(f"{code.name}: {details}")


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

    def to_dict(self) -> dict:
        """The result header as plain JSON-able data."""
        return json_format.MessageToDict(self.header, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)


def _descriptor(image: LocalImage, compression: int) -> image_pb2.ImageDescriptor:
    if image.array is not None:
        a = image.array
        desc = image_pb2.ImageDescriptor(
            encoding=image_pb2.RAW, shape=a.shape, dtype=wire.dtype_to_proto(a.dtype),
            size=a.nbytes, compression=compression, crc32=wire.crc32(a))
    else:
        crc = 0
        for blob in image.dicom:
            crc = wire.crc32(blob, crc)
        desc = image_pb2.ImageDescriptor(
            encoding=image_pb2.DICOM, file_sizes=[len(b) for b in image.dicom],
            size=sum(len(b) for b in image.dicom), compression=compression, crc32=crc)
    if image.spacing is not None:
        desc.spacing_mm.extend(float(s) for s in image.spacing)
    return desc


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


class Client:
    """A connection to a medcompute server.

    Parameters
    ----------
    address : str
        ``HOST:PORT`` of the server; default ``$MEDCOMPUTE_SERVER`` or 127.0.0.1:50051.
    timeout : float
        Seconds each call may take unless the call says otherwise.

    Examples
    --------
    >>> with Client("127.0.0.1:50051") as c:                      # doctest: +SKIP
    ...     r = c.process(volume, ["gaussian:sigma=2", "edge:operator=sobel"])
    ...     r.array.shape, r.usage["compute_seconds"]
    """

    def __init__(self, address: str = DEFAULT_SERVER, *, timeout: float = 600.0):
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
            ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ])
        self._stub = processing_pb2_grpc.ProcessingStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as exc:
            raise ServiceError(exc.code(), exc.details() or "") from None

    def operations(self, *, timeout: float | None = None) -> list[dict]:
        """The server's operations with their parameters, units and defaults."""
        reply = self._call(self._stub.ListOperations, processing_pb2.ListOperationsRequest(),
                           timeout=timeout or self.timeout)
        return [json_format.MessageToDict(o, preserving_proto_field_name=True)
                for o in reply.operations]

    def process(
        self, image, ops: Sequence, *, spacing: Sequence[float] | None = None,
        operands: Sequence = (), device: str = "auto", output_dtype="float32",
        compute_dtype="float32", output: str = "array", compression: str = "none",
        allow_fallback: bool = False, timeout: float | None = None, progress: bool = False,
    ) -> Result:
        """Process an image and return the result.

        Parameters
        ----------
        image : ndarray, path or list of paths
            An array; a ``.npy`` file; a DICOM file; several DICOM files or a folder of
            them (one series).
        ops : sequence
            Operations, as ``"gaussian:sigma=2"`` strings, ``{"op": "gaussian", "sigma": 2}``
            dicts or ``Operation`` messages, applied in order.
        spacing : sequence of float, optional
            Voxel spacing in mm per axis (DICOM input: taken from the files if absent).
        operands : sequence
            Second images for subtract/add, same forms as ``image``.
        device : {"auto", "gpu", "cpu"}
            ``auto``: a GPU worker when one exists and the job fits, else CPU.
        allow_fallback : bool
            With ``device="gpu"``: run on CPU when the cluster has no GPU (the result says
            so) instead of failing with FAILED_PRECONDITION.
        output_dtype, compute_dtype : dtype-like
            Result voxel type (saturating cast) and the precision of the computation.
        output : {"array", "dicom_series", "dicom_file"}
            DICOM output (a derived series) needs DICOM input.
        compression : {"none", "zstd", "blosc"}
            Lossless compression of the chunks both ways.
        """
        if device not in _DEVICES:
            raise ValueError(f"device: expected one of {', '.join(_DEVICES)}, got {device!r}")
        if output not in _OUTPUTS:
            raise ValueError(f"output: expected one of {', '.join(_OUTPUTS)}, got {output!r}")
        if compression not in _COMPRESSION:
            raise ValueError(f"compression: expected one of {', '.join(_COMPRESSION)}, "
                             f"got {compression!r}")
        codec = _COMPRESSION[compression]
        images = [read_input(image, spacing)] + [read_input(o) for o in operands]
        header = processing_pb2.ProcessHeader(
            pipeline=[to_operation(op) for op in ops],
            input=image_pb2.ImageSource(inline=_descriptor(images[0], codec)),
            operands=[image_pb2.ImageSource(inline=_descriptor(i, codec)) for i in images[1:]],
            device=_DEVICES[device], output_dtype=wire.dtype_to_proto(output_dtype),
            compute_dtype=wire.dtype_to_proto(compute_dtype), output_format=_OUTPUTS[output],
            result_compression=codec, allow_fallback=allow_fallback,
        )
        sent = _progress(sum(i.nbytes for i in images), "upload", progress)

        def requests():
            yield processing_pb2.ProcessRequest(header=header)
            for index, img in enumerate(images):
                for payload in _payload(img, codec):
                    yield processing_pb2.ProcessRequest(
                        chunk=image_pb2.Chunk(image=index, data=payload))
                    if sent is not None:
                        sent.update(min(len(payload), wire.CHUNK_SIZE))
            if sent is not None:
                sent.close()

        return self._call(self._receive, self._stub.Process(requests(),
                                                            timeout=timeout or self.timeout),
                          progress)

    def _receive(self, responses, progress: bool) -> Result:
        first = next(responses, None)
        if first is None or first.WhichOneof("msg") != "header":
            raise ServiceError(grpc.StatusCode.INTERNAL, "the server sent no result header")
        header = first.header
        out = header.output
        buffer = bytearray(out.size)
        decoder = wire.ChunkDecoder(out.compression, "result")
        got = 0
        bar = _progress(out.size, "download", progress)
        for message in responses:
            data = decoder.decode(message.chunk.data)
            if got + len(data) > out.size:
                raise ServiceError(grpc.StatusCode.DATA_LOSS, "the result is longer than declared")
            buffer[got:got + len(data)] = data
            got += len(data)
            if bar is not None:
                bar.update(len(data))
        if bar is not None:
            bar.close()
        if got != out.size:
            raise ServiceError(grpc.StatusCode.DATA_LOSS,
                               f"the result ended after {got} of {out.size} bytes")
        if out.HasField("crc32") and wire.crc32(buffer) != out.crc32:
            raise ServiceError(grpc.StatusCode.DATA_LOSS, "the result's checksum does not match")
        if out.encoding == image_pb2.RAW:
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
