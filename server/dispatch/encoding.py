"""The DICOM files of a result that slabs wrote raw, written by CPU workers: in one task,
or a share of a derived series' slices per worker, the parts joined here in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import replace

from medcompute.proto import wire
from medcompute.server.dicom.write import Series, derived_uid
from medcompute.server.dispatch.placement import WorkerView
from medcompute.server.worker.tasks import TaskResult, TaskSpec, encode_dicom, part_path

__all__ = ["ENCODE_SLICES_MIN", "encode_parts", "join"]


async def encode_parts(dispatcher, spec: TaskSpec, shape: tuple[int, ...], dtype: str
                       ) -> TaskResult:
    """The DICOM files of a result that slabs wrote raw: one task, or, for a series of
    one file per slice, a share of the slices per CPU worker, joined here in order."""
    workers = len((dispatcher._view or WorkerView()).cpu)
    slices = shape[0] if len(shape) == 3 else 1
    count = min(workers, slices // ENCODE_SLICES_MIN) \
        if spec.output_format == "dicom_series" else 1
    if count <= 1:
        [result] = await dispatcher._await([dispatcher.submit(
            encode_dicom, spec, shape, dtype, kind="cpu", key=f"job-{spec.job_id}-encode")])
        return result
    uid, created = derived_uid(), time.time()
    bounds = [slices * i // count for i in range(count + 1)]
    shares = [Series(uid, created, (bounds[i], bounds[i + 1])) for i in range(count)]
    try:
        parts = await dispatcher._await([
            dispatcher.submit(encode_dicom, spec, shape, dtype, share, kind="cpu",
                            key=f"job-{spec.job_id}-encode{k}")
            for k, share in enumerate(shares)])
        crc = await asyncio.to_thread(join, [p.out_path for p in parts], spec.out_path)
    finally:
        for share in shares:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part_path(spec.out_path, share))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spec.out_path + ".raw")
    sizes = tuple(size for p in parts for size in p.file_sizes)
    return replace(parts[0], out_path=spec.out_path, file_sizes=sizes, nbytes=sum(sizes),
                   crc32=crc, started_at=min(p.started_at for p in parts),
                   finished_at=max(p.finished_at for p in parts))


#: Slices each worker writes at least when a derived series' files are written in parts.
ENCODE_SLICES_MIN = 16


def join(paths: list[str], out: str | None = None) -> int:
    """The CRC-32 of the files ``paths`` read in order; with ``out``, also written there
    one after the other."""
    crc = 0
    with open(out, "wb") if out else contextlib.nullcontext() as target:
        for path in paths:
            with open(path, "rb") as f:
                while block := f.read(1 << 22):
                    crc = wire.crc32(block, crc)
                    if target is not None:
                        target.write(block)
    return crc
