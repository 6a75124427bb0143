"""Images in flight: what a caller promised to send, the spool files they are written
to, and the writer that checks each arriving piece against the promise.

The server never holds a whole image in memory: each decoded chunk is checked against the
declared size, folded into the CRC and appended to the image's spool file, which the
worker then reads. Which door the bytes came through (a gRPC stream, a DICOM
association) is the caller's business; this module sees only payloads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcompute.proto import wire
from medcompute.server.errors import InvalidArgument

__all__ = ["ExpectedImage", "ImageWriter", "Spool"]


@dataclass(frozen=True)
class ExpectedImage:
    """What a descriptor promises; checked against the bytes that arrive."""

    field: str
    encoding: str                        # "raw" | "dicom"
    size: int
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    spacing: tuple[float, ...] | None = None
    file_sizes: tuple[int, ...] = ()
    #: The chunks' compression, as medcompute.proto.wire's ChunkDecoder takes it (0: none).
    compression: int = 0
    crc32: int | None = None
    #: A stored image (its catalog record, or its id until looked up): no chunks follow.
    stored: object = None
    #: Of a stored image: the compressed version to process (versions.py), "" the voxels;
    #: once resolved, the Version itself.
    version: object = ""


class Spool:
    """Transient files of images in flight, in ``<data_dir>/spool``."""

    def __init__(self, data_dir: Path, name: str = ""):
        self.dir = Path(data_dir) / "spool"
        if name:                     # one of several server processes: its own folder
            self.dir = self.dir / name
        self.dir.mkdir(parents=True, exist_ok=True)

    def clear(self) -> None:
        """Remove what an earlier server process left behind (the folders of the other
        processes of ``serve --processes`` are theirs to clear)."""
        for path in self.dir.iterdir():
            if not path.is_dir():
                path.unlink(missing_ok=True)

    def path(self, job_id: str, name: str) -> Path:
        return self.dir / f"{job_id}.{name}.{uuid.uuid4().hex[:8]}"

    @staticmethod
    def remove(*paths) -> None:
        for p in paths:
            if p:
                Path(p).unlink(missing_ok=True)


class ImageWriter:
    """One image's chunks: decoded, checked against its descriptor, folded into its CRC
    and appended to its file (``path`` None: kept in memory, :attr:`data`).
    :meth:`finish` checks that every declared byte arrived."""

    def __init__(self, expected: ExpectedImage, path):
        self.expected = expected
        self.decoder = wire.ChunkDecoder(expected.compression, f"{expected.field}.compression")
        self.got = 0
        self.crc = 0
        self.buffer = bytearray() if path is None else None
        self.file = open(path, "wb") if path is not None else None

    @property
    def data(self) -> bytes | None:
        """The image's bytes, when kept in memory."""
        return bytes(self.buffer) if self.buffer is not None else None

    @property
    def complete(self) -> bool:
        return self.got >= self.expected.size

    def write(self, payload: bytes) -> None:
        e = self.expected
        try:
            data = self.decoder.decode(payload)
        except wire.WireError as exc:
            raise InvalidArgument(exc.message, exc.field) from None
        if self.got + len(data) > e.size:
            raise InvalidArgument(f"more bytes arrived than the {e.size} declared",
                                  f"{e.field}.size")
        if self.file is not None:
            self.file.write(data)
        else:
            self.buffer += data
        self.got += len(data)
        self.crc = wire.crc32(data, self.crc)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def finish(self) -> None:
        """Close the file; InvalidArgument when bytes are missing or the CRC differs."""
        self.close()
        e = self.expected
        if self.got < e.size:
            raise InvalidArgument(
                f"the stream ended after {self.got} of the {e.size} bytes declared",
                f"{e.field}.size")
        if e.crc32 is not None and self.crc != e.crc32:
            raise InvalidArgument(
                f"checksum mismatch: declared {e.crc32:#010x}, the received bytes give "
                f"{self.crc:#010x}", f"{e.field}.crc32")
