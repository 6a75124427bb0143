"""What a caller asks of the jobs room, as plain values: no generated messages.

The API layer (api/requests.py) builds these from the wire headers and checks what is
about the wire there (enum numbers, oneofs, descriptors); what the request *means*
(limits, the pipeline against the images, DICOM output from DICOM input, a GPU) is
checked by one validator in the domain (:mod:`medcompute.server.jobs.validate`), whichever
door the request came through: gRPC, or a DICOM routing rule.

Error fields are paths relative to the request (``input.inline.shape``,
``pipeline[1].gaussian.sigma_mm``); the API layer places them in its message once.
A request held in another names its fields under the outer one with
:func:`medcompute.server.errors.named`.
The pipeline travels as the API's ``Operation`` messages: the operation schema is the
one generated type allowed to cross into the domain (operations.py resolves it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from medcompute.proto.v1 import operations_pb2
from medcompute.server.storage.spool import ExpectedImage

__all__ = ["ProcessRequest", "SubmitRequest", "RegionRef"]


@dataclass(frozen=True)
class RegionRef:
    """Bytes of a client's registered shared-memory region (jobs/regions.py)."""

    region_id: str
    offset: int
    length: int
    #: The shared-memory object's name, once the registry has looked the id up.
    name: str = ""


@dataclass(frozen=True)
class ProcessRequest:
    """One processing request: the images, the pipeline, where and how to compute."""

    pipeline: tuple = ()                 # operations_pb2.Operation messages, in order
    #: The image (None in a template: a batch's shared request, a routing rule's).
    input: ExpectedImage | None = None
    operands: tuple[ExpectedImage, ...] = ()
    device: str = "auto"                 # "auto" | "gpu" | "cpu"
    allow_fallback: bool = False
    output_format: str = "raw"           # "raw" | "dicom_series" | "dicom_file"
    output_dtype: str = "float32"        # a NumPy dtype name
    compute_dtype: str = "float32"       # "float32" | "float64"
    #: The result chunks' compression, as medcompute.proto.wire takes it (0: none).
    result_compression: int = 0
    store_result: bool = False
    recompute: bool = False
    retention_seconds: float = 0.0
    #: A synchronous call's input in a shared-memory region (no chunks arrive for it).
    input_region: RegionRef | None = None
    #: A synchronous call's RAW result, written into a shared-memory region.
    output_region: RegionRef | None = None

    @property
    def expected(self) -> list[ExpectedImage]:
        """The input image then the operands (``operands[k]`` is ``expected[k + 1]``)."""
        return [self.input, *self.operands]

    @property
    def names(self) -> list[str]:
        """The operations' names, as a job record lists them."""
        return [op.WhichOneof("op") or (f"{op.package.operation}@{op.package.package}"
                                        if op.HasField("package") else "?")
                for op in self.pipeline]

    def with_images(self, expected) -> ProcessRequest:
        """This request with ``expected`` (input first) as its images."""
        return dataclasses.replace(self, input=expected[0], operands=tuple(expected[1:]))

    # -- as stored with an asynchronous job ------------------------------------------
    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("pipeline", "input", "operands", "input_region",
                                 "output_region")}
        out["pipeline"] = [op.SerializeToString(deterministic=True).hex()
                           for op in self.pipeline]
        out["images"] = [_image_json(e) for e in self.expected if e is not None]
        return out

    @classmethod
    def from_json(cls, data: dict) -> ProcessRequest:
        data = dict(data)
        pipeline = tuple(operations_pb2.Operation.FromString(bytes.fromhex(op))
                         for op in data.pop("pipeline"))
        images = [_image(d) for d in data.pop("images")]
        request = cls(pipeline=pipeline, **data)
        return request.with_images(images) if images else request


@dataclass(frozen=True)
class SubmitRequest:
    """An asynchronous job: the processing request and what the job record adds."""

    process: ProcessRequest
    idempotency_key: str = ""
    label: str = ""
    destination: str = ""

    def encode(self) -> bytes:
        """The request as the job's record keeps it (deterministic: a retry with the same
        idempotency key is compared by its digest)."""
        return json.dumps({"process": self.process.to_json(),
                           "idempotency_key": self.idempotency_key, "label": self.label,
                           "destination": self.destination},
                          sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, blob: bytes) -> SubmitRequest:
        data = json.loads(blob)
        return cls(ProcessRequest.from_json(data.pop("process")), **data)


def _image_json(e: ExpectedImage) -> dict:
    if e.stored is not None:
        stored = e.stored if isinstance(e.stored, str) else e.stored.id
        version = e.version if isinstance(e.version, str) else e.version.name
        return {"field": e.field, "stored": stored, "version": version}
    return {"field": e.field, "encoding": e.encoding, "size": e.size, "shape": list(e.shape),
            "dtype": e.dtype.name if e.dtype is not None else None,
            "spacing": list(e.spacing) if e.spacing is not None else None,
            "file_sizes": list(e.file_sizes), "compression": e.compression,
            "crc32": e.crc32}


def _image(d: dict) -> ExpectedImage:
    if "stored" in d:            # looked up again when the job runs (derived.resolve)
        return ExpectedImage(d["field"], "stored", 0, stored=d["stored"], version=d["version"])
    return ExpectedImage(
        d["field"], d["encoding"], d["size"], tuple(d["shape"]),
        np.dtype(d["dtype"]) if d["dtype"] else None,
        tuple(d["spacing"]) if d["spacing"] is not None else None, tuple(d["file_sizes"]),
        compression=d["compression"], crc32=d["crc32"])
