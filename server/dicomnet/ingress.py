"""Instances received over DICOM into the image store, grouped into series.

Each instance is registered through the store's own path (``ImageStore.register``): it is
checked by the validator every door shares (``dicom.instance``: its Study, Series and SOP
Instance UIDs, its geometry, its pixel data) before anything is kept, so a refused
instance leaves nothing behind; its bytes and decoded voxels are written, fsynced and
renamed, and its catalog row committed, before :meth:`Ingress.receive` returns, so a
C-STORE success status always means durable. The instance is then added to its series.
A series is complete when no instance arrived for ``quiet`` seconds (or, with
``on_release``, once the association that sent it is released); then its instances are
registered as one stored volume (the DICOM files one after the other), the instance
images are removed, and the ``on_series`` callbacks run (routing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from medcompute.server.dicomnet.registry import NodeRegistry, Series
from medcompute.server.errors import InvalidArgument, MedcomputeError, ResourceExhausted
from medcompute.server.storage.spool import ExpectedImage
from medcompute.server.store.coding import DICOM
from medcompute.server.store.images import ImageStore

__all__ = ["Ingress", "Received", "dicom_image"]

log = logging.getLogger(__name__)

OnSeries = Callable[[Series], Awaitable[None]]
_PIECE = 1 << 20


def dicom_image(sizes, max_bytes: int) -> ExpectedImage:
    """What received files promise the store: DICOM files of these sizes, uncompressed;
    ResourceExhausted when they hold more than ``max_bytes`` (the server's image limit)."""
    sizes = tuple(int(n) for n in sizes)
    size = sum(sizes)
    if size > max_bytes:
        raise ResourceExhausted(f"the files have {size} bytes; this server accepts at most "
                                f"{max_bytes}", "header.image.file_sizes")
    return ExpectedImage("header.image", DICOM, size, file_sizes=sizes)


async def _payloads(files):
    """The files' bytes, one after the other, in pieces of at most 1 MiB."""
    for data in files:
        view = memoryview(data)
        for start in range(0, len(view), _PIECE):
            yield bytes(view[start:start + _PIECE])


class Received:
    """What :meth:`Ingress.receive` kept: the stored instance's id and its series."""

    def __init__(self, image_id: str, series_uid: str, existed: bool):
        self.image_id = image_id
        self.series_uid = series_uid
        self.existed = existed


class Ingress:
    def __init__(self, store: ImageStore, registry: NodeRegistry, *, quiet: float,
                 on_release: bool, poll: float = 0.25):
        self.store = store
        self.registry = registry
        self.max_bytes = store.config.max_image_bytes
        self.quiet = quiet
        self.on_release = on_release
        self.poll = poll
        self.on_series: list[OnSeries] = []
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        await self._clean_leftovers()
        self._task = asyncio.create_task(self._complete_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def receive(self, data: bytes, *, owner: str, calling: str, called: str) -> Received:
        """Store one instance (the whole DICOM file, with its meta header) durably;
        InvalidArgument naming the attribute, with nothing stored, when the validator
        refuses it."""
        expected = dicom_image([len(data)], self.max_bytes)
        record, existed, _ = await self.store.register(expected, _payloads([data]),
                                                       owner=owner)
        meta = record.metadata
        sops = meta.get("sop_instance_uids") or []
        series_uid = meta.get("series_instance_uid", "")
        if not sops or not series_uid:
            # Only an instance an earlier version kept without them (it is that one again).
            raise InvalidArgument("SeriesInstanceUID (0020,000E) or SOPInstanceUID "
                                  "(0008,0018) is missing in the instance kept before",
                                  "dataset")
        await self.registry.record_instance(owner, series_uid, sops[0], record.id, calling,
                                            called)
        return Received(record.id, series_uid, existed)

    async def released(self, keys) -> None:
        """The association that sent these (owner, series UID) pairs has ended."""
        if keys:
            await self.registry.released(keys)
            self._wake.set()

    # -- completion ---------------------------------------------------------------------
    async def _complete_loop(self) -> None:
        while True:
            try:
                for series in await self.registry.due(self.quiet, self.on_release):
                    await self.complete(series)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dicom: completing received series failed; trying again")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            self._wake.clear()

    async def complete(self, series: Series) -> None:
        """Register a complete series as one stored volume, then run the callbacks."""
        ids = await self.registry.instances(series.owner, series.series_uid)
        try:
            records = [await self.store.get(i, owner=series.owner) for i in ids]
            files = await asyncio.to_thread(lambda: [self._dicom_bytes(r) for r in records])
            expected = dicom_image((len(f) for f in files), self.max_bytes)
            volume, _, _ = await self.store.register(expected, _payloads(files),
                                                     owner=series.owner)
        except MedcomputeError as exc:
            # E.g. slices of different sizes: the instances stay stored one by one.
            if await self.registry.finish_series(series, reason=exc.details):
                log.warning("dicom: a received series of %d instance(s) from %s is not one "
                            "volume: %s", len(ids), series.calling_ae, exc.details)
            return
        if not await self.registry.finish_series(series, image_id=volume.id):
            return      # an instance arrived meanwhile: the series completes later
        log.info("dicom: series of %d instance(s) from %s complete (image %s)", len(ids),
                 series.calling_ae, volume.id)
        done = await self.registry.list_series(series.owner)
        current = next((s for s in done if s.series_uid == series.series_uid), series)
        # The routed jobs start before the instances are removed: removing them is
        # housekeeping (the volume holds every instance, and a crash in between leaves
        # them to _clean_leftovers at the next start).
        for callback in self.on_series:
            try:
                await callback(current)
            except Exception:
                log.exception("dicom: a callback on a complete series failed")
        # A series of one instance is that instance's image (the same identity).
        await self._remove_instances(series.owner, series.series_uid,
                                     [i for i in ids if i != volume.id], keep=volume.id)

    def _dicom_bytes(self, record) -> bytes:
        return self.store.blobs.path(record.blob("dicom").digest).read_bytes()

    async def _remove_instances(self, owner: str, series_uid: str, ids, keep: str = ""
                                ) -> None:
        await self.store.remove_many(ids, owner=owner)
        await self.registry.forget_instances(owner, series_uid, [*ids, keep] if keep else ids)

    async def _clean_leftovers(self) -> None:
        """Instance images of series that completed just before a crash."""
        groups: dict[tuple[str, str], list[str]] = {}
        for owner, series_uid, image_id, volume_id in await self.registry.leftovers():
            if image_id == volume_id:
                await self.registry.forget_instances(owner, series_uid, [image_id])
                continue
            groups.setdefault((owner, series_uid), []).append(image_id)
        for (owner, series_uid), ids in groups.items():
            await self._remove_instances(owner, series_uid, ids)

