"""What a Dask worker runs for the image store: decode and compress, keep a result, render.

The server passes paths in the data directory (a shared filesystem in a multi-node
deployment); the worker reads and writes the blob files itself and returns only
small facts (digests, sizes, UIDs), so voxels never pass through the scheduler.
Each function writes temporary blob files and syncs them; the server installs them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.blobs import (
    FRAME_BYTES,
    BlobWriter,
    VoxelWriter,
    join_voxel_parts,
    read_voxels,
    write_frames,
)

__all__ = ["Written", "Share", "ingest_dicom", "ingest_dicom_share", "join_shares",
           "keep_result", "render_preview", "dicom_parts"]


@dataclass(frozen=True)
class Written:
    """A synced temporary blob file, ready to install."""

    tmp: str
    digest: str
    size: int
    shape: tuple[int, ...] = ()
    dtype: str = ""
    crc32: int = 0
    file_sizes: tuple[int, ...] = ()
    #: Registered DICOM files: the spacing their headers give, and the catalog's
    #: description of them (``dicom.meta.describe``).
    spacing: tuple[float, ...] | None = None
    metadata: dict | None = None


def dicom_parts(path: str, file_sizes, offset: int = 0) -> list[memoryview]:
    with open(path, "rb") as f:
        f.seek(offset)
        blob = memoryview(f.read(sum(file_sizes)))
    parts, at = [], 0
    for size in file_sizes:
        parts.append(blob[at:at + size])
        at += size
    return parts


def _write_voxels(array: np.ndarray, tmp: str) -> Written:
    with VoxelWriter(tmp, array.shape, array.dtype) as w:
        w.add_array(array)
        digest, size = w.finish()
    return Written(tmp, digest, size, tuple(array.shape), w.dtype.str, w.crc32)


def _write_files(files, tmp: str) -> Written:
    with BlobWriter(tmp, crc=True) as w:
        for blob in files:
            w.write(blob)
        digest, size = w.finish()
    return Written(tmp, digest, size, crc32=w.crc32, file_sizes=tuple(len(b) for b in files))


def _headers(parts, max_voxels: int, *, describe: bool):
    """The files' headers loaded (``dicom.volume.load``) and checked by the one validator
    of every door (gRPC Register, DICOM C-STORE: UIDs and geometry), before anything is
    kept; with ``describe``, also described for the catalog."""
    from medcompute.server.dicom import meta
    from medcompute.server.dicom.instance import check_instances
    from medcompute.server.dicom.volume import load, quiet_pydicom

    with quiet_pydicom():
        # This server's voxel limit also bounds how far a deflated file is inflated.
        volume = load(parts, max_voxels=max_voxels, field="input.dicom")
        check_instances(volume, "input.dicom", identity=True)
        if not describe:
            return volume, None
        return volume, meta.describe(volume.datasets, volume.info.order)


def _keep_headers(digest: str, file_sizes, volume) -> None:
    """The checked headers kept for the next task on the same files (header_cache.py):
    the derived series a routed job writes from them."""
    from medcompute.server.worker import header_cache

    if digest:
        header_cache.keep((digest, tuple(int(n) for n in file_sizes)), volume)


def ingest_dicom(path: str, file_sizes, voxels_tmp: str, *, max_voxels: int,
                 field: str = "header.image", digest: str = "") -> Written:
    """Check and describe registered DICOM files, and decode them (rescaled, in slice
    order) into a voxel blob (``digest``: the files' blob, under which this worker keeps
    their headers)."""
    from medcompute.server.dicom.read import decode
    from medcompute.server.worker.tasks import request_field

    try:
        parts = dicom_parts(path, file_sizes)
        volume, metadata = _headers(parts, max_voxels, describe=True)
        array, info = decode(parts, max_voxels=max_voxels, vol=volume)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, request_field(exc.field, field)) from None
    written = replace(_write_voxels(array, voxels_tmp), spacing=info.spacing,
                      metadata=metadata)
    _keep_headers(digest, file_sizes, volume)
    return written


@dataclass(frozen=True)
class Share:
    """A share of a series' slices decoded into frames (``path``: a voxel blob's frames
    without its header)."""

    path: str
    start: int                      # its first slice
    crc32: int
    nbytes: int
    shape: tuple[int, ...]          # the whole volume's
    dtype: str
    spacing: tuple[float, ...] | None = None
    metadata: dict | None = None    # share 0's: the files described (every share checks them)


def ingest_dicom_share(path: str, file_sizes, frames_path: str, k: int, shares: int, *,
                       max_voxels: int, field: str = "header.image", digest: str = ""
                       ) -> Share:
    """Share ``k`` of ``shares`` of :func:`ingest_dicom`'s work: the slices of that share
    (``dicom.read.decode_share``) decoded and compressed into frames; the workers decode
    a series' shares at once and :func:`join_shares` makes the voxel blob."""
    from medcompute.server.dicom.read import decode_share
    from medcompute.server.worker.tasks import request_field

    try:
        parts = dicom_parts(path, file_sizes)
        volume, metadata = _headers(parts, max_voxels, describe=k == 0)
        array, info, start = decode_share(parts, k, shares, align=FRAME_BYTES,
                                          max_voxels=max_voxels, vol=volume)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, request_field(exc.field, field)) from None
    crc, nbytes = write_frames(frames_path, array)
    _keep_headers(digest, file_sizes, volume)
    return Share(frames_path, start, crc, nbytes, tuple(info.shape), info.dtype.str,
                 info.spacing, metadata)


def join_shares(shares: list[Share], voxels_tmp: str) -> Written:
    """The voxel blob of a series decoded in shares (in slice order), synced, with the
    headers' spacing and description (share 0's)."""
    first = next(sh for sh in shares if sh.metadata is not None)
    shares = sorted(shares, key=lambda sh: sh.start)
    shape, dtype = shares[0].shape, np.dtype(shares[0].dtype)
    digest, size, crc = join_voxel_parts(voxels_tmp, shape, dtype,
                                         [(sh.path, sh.crc32, sh.nbytes) for sh in shares])
    return Written(voxels_tmp, digest, size, tuple(shape), dtype.str, crc,
                   spacing=first.spacing, metadata=first.metadata)


def _metadata(parts) -> dict:
    from medcompute.server.dicom.meta import describe
    from medcompute.server.dicom.read import MAX_VOXELS
    from medcompute.server.dicom.volume import load, quiet_pydicom

    with quiet_pydicom():   # pydicom's warnings would quote element values
        volume = load(parts, max_voxels=MAX_VOXELS, field="input.dicom")
        return describe(volume.datasets, volume.info.order)


def keep_result(out_path: str, output_format: str, shape, dtype: str, file_sizes,
                source: tuple | None, spacing, description: str, voxels_tmp: str,
                dicom_tmp: str) -> dict:
    """Turn a job's result file into blobs: the voxels, and DICOM files where the source
    was DICOM (the result's own files when it was DICOM output, else a derived series).

    ``source`` is (path, file_sizes, offset) of the source's DICOM files, or None.
    With DICOM output the voxels are read back from the derived files (16-bit, with
    their rescale). Returns the written blobs and the derived files' metadata.
    """
    from medcompute.server.dicom.read import decode
    from medcompute.server.dicom.write import write_derived

    out: dict = {"voxels": None, "dicom": None, "metadata": {}, "source_metadata": {}}
    if output_format == "raw":
        array = np.fromfile(out_path, dtype=np.dtype(dtype)).reshape(tuple(shape))
        out["voxels"] = _write_voxels(array, voxels_tmp)
        if source is not None:
            parts = dicom_parts(*source)
            files = write_derived(parts, array, spacing=spacing, description=description,
                                  single_file=False)
            out["dicom"] = _write_files(files, dicom_tmp)
            out["source_metadata"] = _metadata(parts)
            out["metadata"] = _metadata(files)
        return out
    parts = dicom_parts(out_path, file_sizes)
    out["dicom"] = _write_files([bytes(p) for p in parts], dicom_tmp)
    array, _ = decode(parts)
    out["voxels"] = _write_voxels(array, voxels_tmp)
    out["metadata"] = _metadata(parts)
    if source is not None:
        out["source_metadata"] = _metadata(dicom_parts(*source))
    return out


def render_preview(voxels_path: str, options: dict):
    """The PNG preview of a voxel blob (see ``preview.render`` for ``options``)."""
    from medcompute.server.worker.preview import render

    return render(read_voxels(voxels_path), **options)
