"""DICOM bytes in, voxel volumes out.

A request carries *parts*, the bytes of one DICOM file each: one single-frame file is
a 2-D image; one multi-frame file, or a series of single-frame files, is a volume
``(slices, rows, columns)``. `read_info` reads headers only (Pixel Data is skipped,
never decoded) and checks all it can, so a request is refused before work is queued;
`decode` (in a worker) returns the pixels in the order and dtype `read_info` reported.
Both parse headers with ``dicom.volume.load``; `read_info` also runs the instance
validator (``dicom.instance``: the geometry processing relies on); ``dicom.write`` writes
results back as DICOM.

Rescale (RescaleSlope/Intercept, per frame in enhanced multi-frame files, DoseGridScaling
for RT Dose) is applied. The dtype is the stored dtype, else int16, else int32 when every
slope is 1 and every intercept whole and the stored range plus intercept fits; else float32.

Every problem with a caller's bytes raises `InvalidArgument` naming the part
(``input.dicom[3]``), with tags, counts and sizes, never element values (no names,
ids, dates or UIDs). For the same reason pydicom's value validation is off while a
call of this module runs (process-wide): its warnings and logs quote the values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels
from pydicom.uid import UID

from medcompute.server.dicom.instance import check_instances
from medcompute.server.dicom.volume import (
    DicomInfo,
    Volume,
    header_int,
    load,
    quiet_pydicom,
    transfer_syntax,
)
from medcompute.server.errors import InvalidArgument

__all__ = ["MAX_VOXELS", "decode", "decode_share", "share_bounds", "read_info"]

MAX_VOXELS = 2**31
"""Default limit on the voxels of one request (all parts together)."""


# -- public API ----------------------------------------------------------------------------


def read_info(parts: Sequence[bytes | memoryview], *, max_voxels: int = MAX_VOXELS,
              field: str = "input.dicom") -> DicomInfo:
    """Describe the image in `parts` from headers alone; raise `InvalidArgument` if unusable
    (``dicom.instance``: its geometry too)."""
    with quiet_pydicom():
        vol = load(parts, max_voxels=max_voxels, field=field)
        check_instances(vol, field, identity=False)
        return vol.info


def decode(parts: Sequence[bytes | memoryview], *, max_voxels: int = MAX_VOXELS,
           field: str = "input.dicom", vol: Volume | None = None
           ) -> tuple[np.ndarray, DicomInfo]:
    """Decode the pixels of `parts`: rescaled, in slice order, with ``info.dtype``
    (``vol``: what ``load`` made of them, if it was called already)."""
    out, info, _ = decode_share(parts, 0, 1, align=1, max_voxels=max_voxels, field=field,
                                vol=vol)
    return out.reshape(info.shape), info


def share_bounds(n: int, slice_bytes: int, k: int, shares: int, align: int) -> tuple[int, int]:
    """Slices ``[start, stop)`` of share ``k`` of ``shares`` of a volume of ``n`` slices:
    consecutive, about equal, each starting at a multiple of ``align`` decoded bytes
    (shares of a series decoded apart join frame by frame); empty where ``n`` is too
    short to cut there."""
    step = align // math.gcd(align, slice_bytes)       # slices per aligned unit
    units = -(-n // step)
    start = min(n, units * k // shares * step)
    stop = n if k == shares - 1 else min(n, units * (k + 1) // shares * step)
    return start, max(start, stop)


def decode_share(parts: Sequence[bytes | memoryview], k: int, shares: int, *, align: int,
                 max_voxels: int = MAX_VOXELS, field: str = "input.dicom",
                 vol: Volume | None = None) -> tuple[np.ndarray, DicomInfo, int]:
    """The slices of share ``k`` of ``shares`` (:func:`share_bounds`) decoded as
    :func:`decode` decodes them: the array of those slices, the volume's info, and the
    first slice's index. Every file holding one of those slices is checked as there."""
    with quiet_pydicom():
        vol = vol or load(parts, max_voxels=max_voxels, field=field)
        info = vol.info
        plane = tuple(info.shape[-2:])
        start, stop = share_bounds(len(vol.slices), math.prod(plane) * info.dtype.itemsize,
                                   k, shares, align)
        out = np.empty((stop - start, *plane), dtype=info.dtype)
        slot = {key: i - start for i, key in enumerate(vol.slices) if start <= i < stop}
        files = {p for p, _ in slot}
        for p in info.order:
            if p in files:
                # The header parsed by load(): its pixel data, deferred, is read from the
                # file's bytes it keeps (a deflated file was read whole).
                _decode_part(vol.datasets[p], vol, p, out, slot, f"{field}[{p}]", start)
    return out, info, start


# -- pixels --------------------------------------------------------------------------------


def _decode_part(ds: Dataset, vol: Volume, p: int, out: np.ndarray, slot: dict,
                 where: str, offset: int = 0) -> None:
    """Decode file ``p`` into ``out[slot[(p, frame)]]`` (the volume's slice
    ``slot + offset``); a frame without a slot is checked, not kept."""
    info = vol.info
    frames = header_int(ds, "NumberOfFrames", where, default=1)
    syntax = UID(transfer_syntax(ds))
    if "TransferSyntaxUID" not in ds.file_meta:  # a file without meta: pydicom needs it
        ds.file_meta.TransferSyntaxUID = syntax
    if "PixelData" in ds and not syntax.is_compressed:
        need = (info.shape[-2] * info.shape[-1] * frames * int(ds.BitsAllocated) + 7) // 8
        if len(ds.PixelData) > need + need % 2:  # trailing padding: pydicom would warn
            ds.PixelData = ds.PixelData[:need + need % 2]
    integer = np.issubdtype(info.dtype, np.integer)
    count = 0
    try:
        for f, frame in enumerate(iter_pixels(ds)):
            if frame.shape != info.shape[-2:] or f >= frames:
                raise InvalidArgument(
                    f"frame {f + 1} decodes to shape {frame.shape}, expected {info.shape[-2:]}; "
                    "the compressed data does not match Rows/Columns", where)
            k = slot.get((p, f))
            if k is None:                      # a frame of another share (decode_share)
                count += 1
                continue
            slope, intercept = vol.rescale[k + offset]
            out[k] = frame
            if integer and intercept:
                out[k] += int(intercept)
            elif not integer and (slope != 1.0 or intercept != 0.0):
                out[k] = frame.astype(np.float64) * slope + intercept
            count += 1
    except (MemoryError, InvalidArgument, KeyboardInterrupt, SystemExit):
        raise
    # Decoder plugins raise many types on damaged data; the Rust ones (pylibjpeg-rle) panic
    # with a PanicException, which is not an Exception.
    except BaseException as exc:  # noqa: BLE001
        raise InvalidArgument(
            f"the pixel data ({syntax.name}) could not be decoded ({type(exc).__name__}); the "
            "file is damaged or its compressed data is invalid; re-export it", where) from None
    if count != frames:
        raise InvalidArgument(f"decoded {count} of {frames} frames; the file is damaged", where)
