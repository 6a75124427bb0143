"""The DICOM attributes of a subscriber's stored series and instances, for QIDO-RS and
WADO-RS metadata.

Every stored image with DICOM files (a received or registered series, a derived series)
is one series here. Which images a subscriber has, and their Study, Series and SOP
Instance UIDs, come from the catalog; the other attributes from the files' headers,
read once per stored image (images never change once stored) and kept in a bounded
cache: a query reads the first file's header of an image it has not seen, a metadata
request each file's header of the series it names, never the pixel data.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset

from medcompute.server.dicom.volume import quiet_pydicom
from medcompute.server.storage.images import FindFilter, ImageRecord
from medcompute.server.store.images import ImageStore
from medcompute.server.worker.store_tasks import dicom_parts

__all__ = ["Index", "Series", "Instance"]

_PAGE = 500
#: Stored images whose headers are kept.
_CACHED = 4096
#: Instances' QIDO answers kept.
_ANSWERS = 200000


@dataclass(frozen=True)
class Series:
    """One stored image with DICOM files, as a series."""

    record: ImageRecord
    #: The first file's attributes, without pixel data.
    header: Dataset

    @property
    def study_uid(self) -> str:
        return self.record.metadata.get("study_instance_uid", "")

    @property
    def series_uid(self) -> str:
        return self.record.metadata.get("series_instance_uid", "")

    @property
    def instances(self) -> int:
        return len(self.record.file_sizes)


@dataclass(frozen=True)
class Instance:
    """One file of a stored image: its attributes (no pixel data) and where it is."""

    record: ImageRecord
    header: Dataset
    #: Its place among the image's files.
    index: int

    @property
    def sop_uid(self) -> str:
        return str(self.header.get("SOPInstanceUID", ""))


def _headers(path: str, file_sizes, first_only: bool) -> list[Dataset]:
    parts = dicom_parts(path, file_sizes[:1] if first_only else file_sizes)
    with quiet_pydicom():
        return [pydicom.dcmread(io.BytesIO(bytes(p)), stop_before_pixels=True, force=True)
                for p in parts]


class Index:
    def __init__(self, store: ImageStore):
        self.store = store
        self._first: OrderedDict[str, Dataset] = OrderedDict()
        self._all: OrderedDict[str, list[Dataset]] = OrderedDict()
        #: QIDO answers of instances, by instance and the attributes asked for.
        self._answers: OrderedDict[tuple, dict] = OrderedDict()

    @staticmethod
    def _keep(cache: OrderedDict, key, value, most: int = 0):
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > (most or _CACHED):
            cache.popitem(last=False)
        return value

    async def records(self, owner: str, *, study_uid: str = "", series_uid: str = ""
                      ) -> list[ImageRecord]:
        """``owner``'s stored images with DICOM files (of one study or series)."""
        out, token = [], ""
        wanted = FindFilter(study_uid=study_uid, series_uid=series_uid)
        while True:
            page, token = await self.store.find(wanted, owner=owner, page_size=_PAGE,
                                                page_token=token)
            out += [r for r in page if r.blob("dicom") is not None and r.file_sizes]
            if not token:
                return out

    async def series(self, owner: str, *, study_uid: str = "", series_uid: str = ""
                     ) -> list[Series]:
        """Every series of ``owner`` (of one study or series), one per stored image."""
        out = []
        for record in await self.records(owner, study_uid=study_uid, series_uid=series_uid):
            header = self._first.get(record.id)
            if header is None:
                path = str(self.store.present(record.blob("dicom")))
                header = (await asyncio.to_thread(_headers, path, record.file_sizes, True))[0]
                self._keep(self._first, record.id, header)
            out.append(Series(record, header))
        return out

    async def instances(self, owner: str, *, study_uid: str = "", series_uid: str = "",
                        sop_uid: str = "") -> list[Instance]:
        """The instances of ``owner``'s stored series (of one study, series or instance),
        each once (an instance stored in two images, its instance image and its series'
        volume for a moment, is the volume's)."""
        out, seen = [], set()
        records = await self.records(owner, study_uid=study_uid, series_uid=series_uid)
        # A series' volume before its instance images (removed once it is complete).
        records.sort(key=lambda r: (-len(r.file_sizes), r.created_at))
        for record in records:
            sops = record.metadata.get("sop_instance_uids") or []
            if sop_uid and sops and sop_uid not in sops:
                continue
            for k, header in enumerate(await self._all_headers(record)):
                sop = str(header.get("SOPInstanceUID", ""))
                if sop in seen or (sop_uid and sop != sop_uid):
                    continue
                seen.add(sop)
                out.append(Instance(record, header, k))
        return out

    async def _all_headers(self, record: ImageRecord) -> list[Dataset]:
        headers = self._all.get(record.id)
        if headers is None:
            path = str(self.store.present(record.blob("dicom")))
            headers = await asyncio.to_thread(_headers, path, record.file_sizes, False)
            self._keep(self._all, record.id, headers)
        return headers

    async def instances_of(self, record: ImageRecord) -> list[Instance]:
        """The instances of one stored image with DICOM files, in its files' order."""
        return [Instance(record, h, k) for k, h in enumerate(await self._all_headers(record))]

    def answer(self, inst: Instance, asked: tuple, make) -> dict:
        """The answer ``make(inst)`` for the attributes ``asked`` names, made once per
        instance and kind of query (images never change once stored)."""
        key = (inst.record.id, inst.index, asked)
        got = self._answers.get(key)
        if got is None:
            got = make(inst)
            self._keep(self._answers, key, got, _ANSWERS)
        return got
