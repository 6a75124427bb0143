"""Blob files of the image store: content-addressed, written atomically, voxels compressed.

A blob lives at ``<data_dir>/blobs/<aa>/<sha256>``, named by the SHA-256 of its bytes,
so `verify` can check every file against its name. A blob is written to a temporary
file in ``blobs/tmp`` (hashed as it is written), synced, renamed into place, and the
directory synced: a blob is either whole at its path or absent.

Voxel blobs hold an array losslessly compressed: a small JSON header (dtype, shape,
codec), then frames of at most ``FRAME_BYTES`` decoded bytes, each a blosc2 chunk
(LZ4, byte shuffle with the dtype's item size) prefixed by its length. A frame is a
valid BLOSC chunk of the wire format, so a store can send frames as they are.

Used by the server and by the Dask workers (which read and write blobs themselves);
nothing here holds state beyond one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medcompute.proto import wire

__all__ = ["BlobStore", "TieredBlobStore", "BlobWriter", "VoxelWriter", "read_voxels",
           "read_voxel_slices", "voxel_frames", "voxel_chunks", "file_digest", "fsync_dir",
           "voxel_header", "write_frames", "join_voxel_parts", "FRAME_BYTES"]

#: Decoded bytes per frame of a voxel blob (the wire's chunk size).
FRAME_BYTES = 1 << 20
_MAGIC = b"MCVOXEL1"
_CODEC = "blosc2-lz4-shuffle"
_LEN = struct.Struct("<I")
#: Temporary files of a live process on this host are left alone for this long.
STALE_TMP_SECONDS = 24 * 3600


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: str | os.PathLike) -> tuple[str, int]:
    """SHA-256 (hex) and length of a file's bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


class BlobStore:
    """The blob folder of one data directory: paths, temporary files, installing, removing."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def new_tmp(self) -> Path:
        """A fresh temporary path, named after this host and process (see `clear_stale`)."""
        return self.tmp / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"

    def install(self, tmp: str | os.PathLike, digest: str) -> Path:
        """Rename a synced temporary file into place and sync the directory."""
        final = self.path(digest)
        folder = final.parent
        if not folder.exists():
            folder.mkdir(exist_ok=True)
            fsync_dir(self.root)
        os.replace(tmp, final)
        fsync_dir(folder)
        return final

    def remove(self, digest: str) -> int:
        """Delete a blob; its size, or 0 when it was not there. The folder is not synced:
        the catalog's commit is what removes an image, and a blob whose unlink a crash
        undid is one no row refers to, which the store removes when it opens again."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def digests(self) -> Iterator[str]:
        """Every blob file present (not the temporary ones)."""
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for f in sorted(folder.iterdir()):
                    if len(f.name) == 64 and f.name.startswith(folder.name):
                        yield f.name

    def clear_stale(self, now: float | None = None) -> int:
        """Remove temporary files that no live writer owns; return how many.

        A file of this host whose process is gone is removed at once (an interrupted
        write); any other one once it is a day old.
        """
        now = time.time() if now is None else now
        host = socket.gethostname()
        removed = 0
        for f in self.tmp.iterdir():
            owner, _, rest = f.name.rpartition("-")[0].rpartition("-")
            stale = now - _mtime(f) > STALE_TMP_SECONDS
            if owner == host and rest.isdigit():
                stale = stale or not _alive(int(rest))
            if stale:
                f.unlink(missing_ok=True)
                removed += 1
        return removed


class TieredBlobStore(BlobStore):
    """The hot blob folder (the data directory's), and a cold one (``--cold-dir``) or none.

    New blobs are written hot. A blob file is in one tier, or, for the moment of a move
    between tiers (``tiers.py``), in both with the same bytes: `path` gives the hot copy
    while there is one, else the cold one, so every read finds the blob whichever step a
    move has reached. `remove` removes both copies; `digests` lists both folders.
    """

    def __init__(self, root: str | os.PathLike, cold: str | os.PathLike | None = None):
        super().__init__(root)
        #: The hot folder alone (without the fall-back to cold), and the cold one.
        self.hot = BlobStore(root)
        self.cold = BlobStore(cold) if cold is not None else None

    def path(self, digest: str) -> Path:
        hot = super().path(digest)
        if self.cold is None or hot.exists():
            return hot
        cold = self.cold.path(digest)
        return cold if cold.exists() else hot

    def hot_path(self, digest: str) -> Path:
        return super().path(digest)

    def tier_of_file(self, digest: str) -> str:
        """Where the file is now: "hot", "cold", "both" or "missing"."""
        hot = super().path(digest).exists()
        cold = self.cold is not None and self.cold.path(digest).exists()
        return {(True, False): "hot", (False, True): "cold", (True, True): "both"}.get(
            (hot, cold), "missing")

    def remove(self, digest: str) -> int:
        size = super().remove(digest)
        if self.cold is not None:
            size = self.cold.remove(digest) or size
        return size

    def digests(self) -> Iterator[str]:
        found = set(super().digests())
        if self.cold is not None:
            found.update(self.cold.digests())
        yield from sorted(found)

    def clear_stale(self, now: float | None = None) -> int:
        removed = super().clear_stale(now)
        if self.cold is not None:
            removed += self.cold.clear_stale(now)
        return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobWriter:
    """Writes one blob to a temporary file, hashing it; `finish` syncs it.

    Use as a context manager: leaving it without `finish` (an error, a cancelled
    call) removes the temporary file. With ``pipelined=True`` the writing and the hashing
    each run in a thread of their own, a few pieces behind :meth:`write` (which then
    returns at once), so that the caller's work on the next piece (decoding,
    compressing) overlaps with them; an error of those threads is raised by a later call.
    """

    def __init__(self, path: str | os.PathLike, *, crc: bool = False, pipelined: bool = False):
        self.path = Path(path)
        self._file = open(self.path, "xb")
        self._hash = hashlib.sha256()
        self._crc = crc
        self.size = 0
        self.digest = ""
        #: CRC-32 of the bytes written (with ``crc=True``); VoxelWriter: of the decoded bytes.
        self.crc32 = 0
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        if pipelined:
            # Writing and hashing each in a thread of their own (both release the GIL on
            # large pieces): the slower of the two bounds the blob, not their sum.
            for step, name in ((self._write_piece, "blob-write"),
                               (self._hash_piece, "blob-hash")):
                pieces: queue.Queue = queue.Queue(maxsize=8)
                thread = threading.Thread(target=self._drain, args=(pieces, step), name=name,
                                          daemon=True)
                thread.start()
                self._queues.append(pieces)
                self._threads.append(thread)

    def _write_piece(self, data) -> None:
        self._file.write(data)

    def _hash_piece(self, data) -> None:
        self._hash.update(data)

    def _drain(self, pieces: queue.Queue, step) -> None:
        while (data := pieces.get()) is not None:
            if self._error is None:
                try:
                    step(data)
                except BaseException as exc:   # raised by the next write or finish
                    self._error = exc

    def _stop(self) -> None:
        """Let the threads finish what they were given; raise the first error."""
        for pieces in self._queues:
            pieces.put(None)
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []
        if self._error is not None:
            raise self._error

    def write(self, data) -> None:
        if self._error is not None:
            raise self._error
        if self._queues:
            # The caller may reuse its buffer: the threads get bytes of their own.
            piece = data if isinstance(data, bytes) else bytes(data)
            for pieces in self._queues:
                pieces.put(piece)
        else:
            self._write_piece(data)
            self._hash_piece(data)
        self.size += len(memoryview(data).cast("B"))
        if self._crc:
            self.crc32 = wire.crc32(data, self.crc32)

    def finish(self) -> tuple[str, int]:
        """Flush and fsync; return (sha256 hex, size)."""
        self._stop()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.digest = self._hash.hexdigest()
        return self.digest, self.size

    def discard(self) -> None:
        with contextlib.suppress(BaseException):
            self._stop()
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None or not self.digest:
            self.discard()


def _blosc2():
    import blosc2

    return blosc2


class VoxelWriter(BlobWriter):
    """Writes an array's bytes, in C order, as a compressed voxel blob.

    `add` takes the decoded bytes in pieces of any size; they are cut into frames of
    `FRAME_BYTES`, so the blob depends only on the array (and the codec's version).
    """

    def __init__(self, path: str | os.PathLike, shape, dtype, *, pipelined: bool = False):
        super().__init__(path, pipelined=pipelined)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.expected = math.prod(self.shape) * self.dtype.itemsize
        self.received = 0
        self._pending = bytearray()
        self.write(voxel_header(self.shape, self.dtype))

    def add(self, data) -> None:
        """Append decoded bytes (raises ValueError past the array's size)."""
        view = memoryview(data).cast("B")
        if self.received + len(view) > self.expected:
            raise ValueError(f"more than the {self.expected} bytes of the array")
        self.received += len(view)
        self.crc32 = wire.crc32(view, self.crc32)
        if not self._pending and len(view) == FRAME_BYTES:
            self._frame(view)
            return
        self._pending += view
        while len(self._pending) >= FRAME_BYTES:
            self._frame(memoryview(self._pending)[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]

    def add_array(self, array: np.ndarray) -> None:
        flat = np.ascontiguousarray(array, dtype=self.dtype.newbyteorder("<")).reshape(-1)
        view = memoryview(flat).cast("B")
        for start in range(0, len(view), FRAME_BYTES):
            self.add(view[start:start + FRAME_BYTES])

    def _frame(self, piece) -> None:
        packed = _pack(piece, self.dtype.itemsize)
        self.write(_LEN.pack(len(packed)))
        self.write(packed)

    def finish(self) -> tuple[str, int]:
        if self._pending:
            self._frame(memoryview(self._pending))
            self._pending = bytearray()
        if self.received != self.expected:
            raise ValueError(f"the array has {self.expected} bytes, {self.received} were given")
        return super().finish()


def voxel_header(shape, dtype) -> bytes:
    """What a voxel blob starts with: the magic, then its description."""
    header = json.dumps({"dtype": np.dtype(dtype).str, "shape": tuple(int(n) for n in shape),
                         "codec": _CODEC, "frame": FRAME_BYTES}).encode()
    return _MAGIC + _LEN.pack(len(header)) + header


def _pack(piece, itemsize: int) -> bytes:
    blosc2 = _blosc2()
    return blosc2.compress(piece, typesize=itemsize, codec=blosc2.Codec.LZ4, clevel=5,
                           filter=blosc2.Filter.SHUFFLE)


def write_frames(path: str | os.PathLike, array: np.ndarray) -> tuple[int, int]:
    """The frames of ``array`` as a voxel blob holds them, without the blob's header, into
    ``path`` (a part of a blob whose array starts at a multiple of FRAME_BYTES: see
    :func:`join_voxel_parts`); the CRC-32 and the number of its decoded bytes."""
    flat = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1)
    view = memoryview(flat).cast("B")
    crc = 0
    with open(path, "wb") as f:
        for start in range(0, len(view), FRAME_BYTES):
            piece = view[start:start + FRAME_BYTES]
            crc = wire.crc32(piece, crc)
            packed = _pack(piece, flat.dtype.itemsize)
            f.write(_LEN.pack(len(packed)))
            f.write(packed)
    return crc, len(view)


def join_voxel_parts(path: str | os.PathLike, shape, dtype, parts) -> tuple[str, int, int]:
    """The voxel blob of an array whose consecutive parts were written by
    :func:`write_frames` (``parts``: (path, crc32, decoded bytes), in order; each but the
    last a whole number of frames), written and synced at ``path``: (digest, size, CRC-32 of
    the decoded bytes), as :class:`VoxelWriter` gives for the whole array."""
    from isal.isal_zlib import crc32_combine

    expected = math.prod(tuple(shape)) * np.dtype(dtype).itemsize
    if sum(n for _, _, n in parts) != expected:
        raise ValueError(f"the parts hold {sum(n for _, _, n in parts)} of the array's "
                         f"{expected} bytes")
    crc = 0
    with BlobWriter(path, pipelined=True) as w:
        w.write(voxel_header(shape, dtype))
        for part, part_crc, n in parts:
            with open(part, "rb") as f:
                while piece := f.read(FRAME_BYTES):
                    w.write(piece)
            crc = crc32_combine(crc, part_crc, n)
        digest, size = w.finish()
    return digest, size, crc


def _open_voxels(f) -> dict:
    if f.read(len(_MAGIC)) != _MAGIC:
        raise ValueError(f"{f.name}: not a voxel blob")
    (n,) = _LEN.unpack(f.read(_LEN.size))
    return json.loads(f.read(n))


def voxel_frames(path: str | os.PathLike) -> Iterator[bytes]:
    """The compressed frames of a voxel blob, in order (each a blosc2 chunk)."""
    with open(path, "rb") as f:
        _open_voxels(f)
        while head := f.read(_LEN.size):
            (n,) = _LEN.unpack(head)
            frame = f.read(n)
            if len(frame) != n:
                raise ValueError(f"{path}: the voxel blob is truncated")
            yield frame


def voxel_chunks(path: str | os.PathLike) -> Iterator[bytes]:
    """The decoded bytes of a voxel blob, one frame at a time."""
    blosc2 = _blosc2()
    for frame in voxel_frames(path):
        yield blosc2.decompress(frame)


def read_voxel_slices(path: str | os.PathLike, start: int, stop: int) -> np.ndarray:
    """Slices ``[start, stop)`` along the first axis of a voxel blob, decoding only the
    frames that hold them (every frame but the last holds the header's ``frame`` bytes)."""
    blosc2 = _blosc2()
    with open(path, "rb") as f:
        header = _open_voxels(f)
        dtype = np.dtype(header["dtype"])
        shape = tuple(header["shape"])
        frame = int(header.get("frame", FRAME_BYTES))
        if not 0 <= start <= stop <= (shape[0] if shape else 0):
            raise ValueError(f"{path}: slices {start}:{stop} of a first axis of "
                             f"{shape[0] if shape else 0}")
        row = math.prod(shape[1:]) * dtype.itemsize
        lo, hi = start * row, stop * row
        out = np.empty((stop - start, *shape[1:]), dtype=dtype)
        view = memoryview(out.reshape(-1)).cast("B")
        at = filled = 0                       # decoded offset of the next frame
        while at < hi:
            head = f.read(_LEN.size)
            if len(head) != _LEN.size:
                raise ValueError(f"{path}: the voxel blob is truncated")
            (n,) = _LEN.unpack(head)
            if at + frame <= lo:              # wholly before the slices: not decoded
                f.seek(n, os.SEEK_CUR)
                at += frame
                continue
            compressed = f.read(n)
            if len(compressed) != n:
                raise ValueError(f"{path}: the voxel blob is truncated")
            data = memoryview(blosc2.decompress(compressed))
            a, b = max(lo, at), min(hi, at + len(data))
            view[a - lo:b - lo] = data[a - at:b - at]
            filled += b - a
            at += len(data)
    if filled != hi - lo:
        raise ValueError(f"{path}: the voxel blob holds fewer bytes than its header declares")
    return out


def read_voxels(path: str | os.PathLike) -> np.ndarray:
    """The array of a voxel blob."""
    blosc2 = _blosc2()
    with open(path, "rb") as f:
        header = _open_voxels(f)
    dtype = np.dtype(header["dtype"])
    shape = tuple(header["shape"])
    out = np.empty(shape, dtype=dtype)
    view = memoryview(out.reshape(-1)).cast("B")
    at = 0
    for frame in voxel_frames(path):
        data = blosc2.decompress(frame)
        if at + len(data) > len(view):
            raise ValueError(f"{path}: the voxel blob holds more than its header declares")
        view[at:at + len(data)] = data
        at += len(data)
    if at != len(view):
        raise ValueError(f"{path}: the voxel blob holds {at} of {len(view)} bytes")
    return out
