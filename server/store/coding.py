"""How stored images travel: what a Get stream carries, for its header.

Below both the store (originals, voxels) and the versions (a version's files).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StreamInfo"]


@dataclass(frozen=True)
class StreamInfo:
    """What a Get stream carries, for its header."""

    encoding: int                   # image_pb2.ENCODING_RAW or image_pb2.ENCODING_DICOM
    size: int
    crc32: int
    compression: int
    file_sizes: tuple[int, ...] = ()
