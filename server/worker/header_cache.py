"""Parsed DICOM headers kept between the tasks of one worker process.

Registering a series parses every file's header (``dicom.volume.load``) on each worker
that decodes a share of it; the job a routing rule starts on the same series next writes
its derived files from the same headers, and parsing them again was most of that
writing. Each worker keeps the volumes it parsed last (of ``KEPT_FILES`` files at most
in all, about 100 KB each), by the digest of the stored DICOM blob and its file sizes,
without their pixel data: what ``dicom.write.write_derived`` reads, and nothing more.

A kept volume has passed ``dicom.instance.check_instances`` with ``identity=True`` (its
geometry and identity), before it was kept; it is read by later tasks, never changed.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from pydicom.dataelem import RawDataElement

from medcompute.server.dicom.volume import PIXEL_TAGS, Volume

__all__ = ["KEPT_FILES", "keep", "recall"]

#: Files of the volumes each worker keeps, in all (the oldest volume leaves first).
KEPT_FILES = 2048

_lock = threading.Lock()
_kept: OrderedDict[tuple, Volume] = OrderedDict()


def _deferred(ds, tag) -> bool:
    raw = ds.get_item(tag, keep_deferred=True)
    return (isinstance(raw, RawDataElement) and raw.value is None
            and raw.length not in (0, 0xFFFFFFFF))


def _headers_only(ds) -> bool:
    """Drop ``ds``'s pixel data and keep, of the file's bytes its deferred elements are
    read from, only those before the pixel data; False when that cannot be done (an
    element after the pixel data is still to be read)."""
    pixel = [t for t in PIXEL_TAGS if t in ds]
    start = None
    if pixel:
        raw = ds.get_item(pixel[0], keep_deferred=True)
        if any(_deferred(ds, t) for t in ds.keys() if t > pixel[0]):
            return False
        start = raw.value_tell if isinstance(raw, RawDataElement) else None
        for tag in pixel:
            del ds[tag]
    buffer = getattr(ds, "buffer", None)
    if not any(_deferred(ds, t) for t in ds.keys()):
        ds.buffer = None
    elif start is not None and isinstance(buffer, io.BytesIO):
        ds.buffer = io.BytesIO(buffer.getbuffer()[:start].tobytes())
    else:
        return False
    return True


def keep(key: tuple, vol: Volume) -> None:
    """Keep ``vol``, checked with ``identity=True``, under ``key`` ((digest, file sizes));
    its datasets are changed (pixel data dropped): the caller is done with them."""
    if len(vol.datasets) > KEPT_FILES or not all(_headers_only(ds) for ds in vol.datasets):
        return
    with _lock:
        _kept[key] = vol
        _kept.move_to_end(key)
        while sum(len(v.datasets) for v in _kept.values()) > KEPT_FILES:
            _kept.popitem(last=False)


def recall(key: tuple) -> Volume | None:
    """The volume kept under ``key``, or None."""
    with _lock:
        vol = _kept.get(key)
        if vol is not None:
            _kept.move_to_end(key)
        return vol
