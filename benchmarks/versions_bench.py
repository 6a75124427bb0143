"""Stored versions and tiers: each version's size, encode and decode speed against the
original, the bytes of each resolution level, and a cold read against a hot read.

In-process, against a real ImageStore (catalog, blob files) whose worker functions run
in this process: a volume of pydicom's CT slice, its stored values shifted per slice
and written as a DICOM series (``volume_shape`` of the mode, 16-bit), and pydicom's MR
slice.

- original: decoding the registered (uncompressed) files with pydicom, the baseline;
- each version: its bytes, ratio and error as the store recorded them, the seconds to
  make it (encode, check, write; on one core), and to decode its files with pydicom;
- resolution levels of the lossless version: bytes sent per level;
- hot vs cold read: the seconds for a Get of the voxels served from the hot tier (file
  in the page cache) and from the cold tier with the file dropped from the page cache
  first (posix_fadvise DONTNEED), so it is read from the medium. Both folders are on the
  same disk here: the figure is the price of a read from the medium, not of a slower
  medium.
"""

from __future__ import annotations

import asyncio
import copy
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np

__all__ = ["run"]


def _series(shape) -> list[bytes]:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    slices, rows, cols = shape
    reps = (-(-rows // base.Rows), -(-cols // base.Columns))
    tile = np.tile(base.pixel_array, reps)[:rows, :cols]
    uid, parts = generate_uid(), []
    for k in range(slices):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), uid
        ds.Rows, ds.Columns = rows, cols
        ds.ImagePositionPatient = [0, 0, 2.0 * k]
        ds.InstanceNumber = k + 1
        ds.PixelData = (tile + np.int16(3 * k)).astype(np.int16).tobytes()
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
        parts.append(out.getvalue())
    return parts


def _decode(files: list[bytes]) -> int:
    import pydicom

    return sum(pydicom.dcmread(io.BytesIO(f)).pixel_array.size for f in files)


def _drop_cache(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


async def _in_threads(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


async def _bench(parts: list[bytes], sizes, root: Path, cold_dir: Path | None) -> dict:
    from medcompute.proto import wire
    from medcompute.proto.v1 import image_pb2
    from medcompute.server.api.store import registration, stream_coder
    from medcompute.server.config import ServerConfig
    from medcompute.server.store.images import ImageStore

    cold = cold_dir or root / "cold"
    store = ImageStore(ServerConfig(address="127.0.0.1:0", data_dir=root / "data",
                                    cold_dir=cold, min_free_bytes=0), _in_threads)
    await store.open()
    try:
        crc = 0
        for p in parts:
            crc = wire.crc32(p, crc)
        desc = image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_DICOM,
                                         file_sizes=[len(p) for p in parts],
                                         size=sum(len(p) for p in parts), crc32=crc,
                                         compression=image_pb2.COMPRESSION_NONE)

        async def chunks():
            for i, data in enumerate(wire.iter_chunks(b"".join(parts)), 1):
                yield i, wire.image_chunk(0, data)
        expected, payloads = registration(desc, chunks(), max_bytes=store.config.max_image_bytes)
        record, _, _ = await store.register(expected, payloads, owner="bench")
        none = stream_coder(image_pb2.COMPRESSION_NONE)
        pixel_bytes = int(np.prod(record.shape)) * np.dtype(record.dtype).itemsize
        original = common.measure(lambda: _decode(parts), repeats=sizes.repeats,
                                  in_process=True)
        out = {"shape": list(record.shape), "files": len(parts),
               "original": {"bytes": sum(len(p) for p in parts), "voxel_bytes": pixel_bytes,
                            "decode": original}}
        rows = []
        for spec in store.versions.specs:
            t0 = time.perf_counter()
            version = await store.versions.get(record, spec)
            encode = time.perf_counter() - t0
            _, info, payloads = await store.versions.fetch(record, spec, 0, none)
            data = b"".join([p async for p in payloads])
            files, at = [], 0
            for n in info.file_sizes:
                files.append(data[at:at + n])
                at += n
            decode = common.measure(lambda files=files: _decode(files), repeats=sizes.repeats,
                                    in_process=True)
            rows.append({"name": spec.name, "purpose": spec.purpose, "lossless": spec.lossless,
                         "configured_ratio": spec.ratio, "bytes": version.stored_bytes,
                         "ratio": version.ratio, "max_error": version.max_error,
                         "psnr_db": version.psnr_db,
                         "encode": {"seconds": encode, "runs": 1},
                         "decode": decode,
                         "decode_vs_original": common.ratio(original, decode)})
        out["versions"] = rows
        lossless = store.versions.resolve("lossless")
        levels = []
        if lossless is not None:
            made = await store.versions.get(record, lossless)
            for level in range(made.resolutions):
                _, info, payloads = await store.versions.fetch(record, lossless, level, none)
                [p async for p in payloads]
                levels.append({"level": level, "bytes": info.size})
        out["resolution_levels"] = levels

        async def read() -> None:
            _, payloads = store.stream(record, "voxels", none)
            async for _ in payloads:
                pass

        async def timed_reads(cold_read: bool) -> dict:
            times = []
            await read()                                  # warm-up (hot: into the cache)
            for _ in range(max(1, sizes.repeats)):
                if cold_read:
                    await asyncio.to_thread(_drop_cache, store.blobs.path(
                        record.blob("voxels").digest))
                t0 = time.perf_counter()
                await read()
                times.append(time.perf_counter() - t0)
            return {"seconds": statistics.median(times), "runs": len(times)}
        hot = await timed_reads(False)
        await store.tiers.move_image(record, "cold")
        record = await store.get(record.id, owner="bench")
        dropped = _drop_cache(store.blobs.path(record.blob("voxels").digest))
        cold_read = await timed_reads(True) if dropped else common.absent(
            "posix_fadvise is not available: the page cache cannot be dropped")
        out["tiers"] = {"hot_read": hot, "cold_read": cold_read,
                        "cold_vs_hot": common.ratio(cold_read, hot),
                        "voxel_bytes": record.size,
                        "same_disk": cold_dir is None,
                        "served_from": store.tiers.read_from(record, "voxels")}
        return out
    finally:
        store.close()


def run(sizes, log, cold_dir: Path | None = None) -> dict:
    """``cold_dir``: the cold tier's folder (default: beside the data directory)."""
    """The versions section of the report."""
    shape = (max(2, sizes.volume_shape[0] // 4),) + tuple(sizes.volume_shape[1:])
    log(f"versions: a {shape[0]}x{shape[1]}x{shape[2]} int16 CT series")
    parts = _series(shape)
    with tempfile.TemporaryDirectory(prefix="mc-versions-") as tmp:
        out = asyncio.run(_bench(parts, sizes, Path(tmp), cold_dir))
    out["available"] = True
    out["notes"] = [__doc__.split("\n\n", 2)[2].strip().replace("\n", " ")]
    return out
