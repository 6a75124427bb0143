"""How stored images travel: encodings, compressions, the coder of a stream's payloads,
and what a Get stream carries, for its header.

Domain values: the API layer translates the wire's enums to and from them. Below both
the store (originals, voxels) and the versions (a version's files).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RAW", "DICOM", "ENCODINGS", "NONE", "ZSTD", "BLOSC", "COMPRESSIONS", "Coder",
           "StreamInfo"]

#: Encodings: an array's bytes, or DICOM files one after the other (ExpectedImage.encoding).
RAW, DICOM = "raw", "dicom"
ENCODINGS = (RAW, DICOM)
#: Compressions of a stream's chunks, each chunk on its own.
NONE, ZSTD, BLOSC = "none", "zstd", "blosc"
COMPRESSIONS = (NONE, ZSTD, BLOSC)


class Coder(Protocol):
    """Codes the payloads of a stream the store sends: cuts bytes into chunk payloads,
    each compressed on its own (the wire format's; the API layer gives it)."""

    @property
    def compression(self) -> str:
        """NONE, ZSTD or BLOSC."""
        ...

    def chunks(self, data, *, itemsize: int = 1) -> Iterator[bytes]:
        """The payloads of ``data`` (any buffer; ``itemsize`` for BLOSC's shuffle)."""
        ...


@dataclass(frozen=True)
class StreamInfo:
    """What a Get stream carries, for its header."""

    encoding: str                   # RAW or DICOM
    size: int
    crc32: int
    compression: str                # as the stream's Coder says
    file_sizes: tuple[int, ...] = ()
