"""The DICOM attributes of a subscriber's stored series and instances, for QIDO-RS and
WADO-RS metadata.

Every stored image with DICOM files (a received or registered series, a derived series)
is one series here. Which images a subscriber has, and their Study, Series and SOP
Instance UIDs, come from the catalog; the other attributes from the files' headers,
read once per stored image (images never change once stored), written to the catalog as
DICOM JSON (storage/instance_headers.py) and kept in a bounded cache: a query reads the
first file's header of an image it has not seen, a metadata request each file's header
of the series it names, never the pixel data; after a restart both read the catalog's
DICOM JSON and no file. In that JSON, large binary values (bulk data) are not kept: each
is a bulk data URI marker (``BULK_MARK`` and the tag) that WADO-RS metadata turns into
the instance's bulk data URI; the dataset rebuilt from it has them empty.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import OrderedDict
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset

from medcompute.server.dicom.volume import quiet_pydicom
from medcompute.server.storage.images import FindFilter, ImageRecord
from medcompute.server.storage.instance_headers import InstanceHeaders
from medcompute.server.store.images import ImageStore
from medcompute.server.worker.store_tasks import dicom_parts

__all__ = ["BULK_MARK", "BULK_THRESHOLD", "Index", "Series", "Instance", "from_json",
           "to_json"]

#: Values at least this long are bulk data: in metadata, a bulk data URI.
BULK_THRESHOLD = 1024
#: What stands for a bulk data URI in the catalog's DICOM JSON (then the tag, 8 hex).
BULK_MARK = "bulk:"

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
    #: Its attributes as DICOM JSON, bulk data as ``BULK_MARK`` URIs (see to_json).
    json: dict | None = None

    @property
    def sop_uid(self) -> str:
        return str(self.header.get("SOPInstanceUID", ""))


#: A header: the attributes as a dataset (no pixel data) and as the catalog's DICOM JSON.
Header = tuple[Dataset, dict]


def to_json(ds: Dataset) -> str:
    """The catalog's text of a header: its DICOM JSON (bulk data as ``BULK_MARK`` URIs)
    and its file meta information (the transfer syntax)."""
    body = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD,
                           bulk_data_element_handler=lambda e: f"{BULK_MARK}{e.tag:08X}")
    meta = getattr(ds, "file_meta", None)
    return json.dumps({"meta": meta.to_json_dict() if meta is not None else {},
                       "dataset": body}, separators=(",", ":"))


def _unbulked(value):
    """A copy of DICOM JSON with its bulk data elements empty (no URI to resolve)."""
    if isinstance(value, dict):
        if "BulkDataURI" in value:
            return {"vr": value["vr"]}
        return {k: _unbulked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unbulked(v) for v in value]
    return value


def from_json(text: str) -> Header:
    """The header :func:`to_json` wrote (bulk data values empty)."""
    got = json.loads(text)
    body = got["dataset"]
    with quiet_pydicom():
        ds = Dataset.from_json(_unbulked(body) if BULK_MARK in text else body)
        ds.file_meta = FileMetaDataset(Dataset.from_json(got["meta"]))
    return ds, body


def _headers(path: str, file_sizes, first_only: bool) -> list[tuple[Header, str]]:
    """Each file's header read from the stored files, with its text for the catalog."""
    parts = dicom_parts(path, file_sizes[:1] if first_only else file_sizes)
    out = []
    with quiet_pydicom():
        for p in parts:
            ds = pydicom.dcmread(io.BytesIO(bytes(p)), stop_before_pixels=True, force=True)
            text = to_json(ds)
            out.append(((ds, json.loads(text)["dataset"]), text))
    return out


class Index:
    def __init__(self, store: ImageStore):
        self.store = store
        self.headers = InstanceHeaders(store.catalog.db)
        self._first: OrderedDict[str, Header] = OrderedDict()
        self._all: OrderedDict[str, list[Header]] = OrderedDict()
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
        records = await self.records(owner, study_uid=study_uid, series_uid=series_uid)
        kept = await self._from_catalog([r for r in records if r.id not in self._first],
                                        first_only=True)
        for record in records:
            header = self._first.get(record.id)
            if header is None and record.id in kept:
                header = await asyncio.to_thread(from_json, kept[record.id][0])
                self._keep(self._first, record.id, header)
            if header is None:
                path = str(self.store.present(record.blob("dicom")))
                header, text = (await asyncio.to_thread(_headers, path, record.file_sizes,
                                                        True))[0]
                await self.headers.put(record.id, [text])
                self._keep(self._first, record.id, header)
            out.append(Series(record, header[0]))
        return out

    async def _from_catalog(self, records: list[ImageRecord], *, first_only: bool = False
                            ) -> dict[str, list[str]]:
        """The catalog's headers of those of ``records`` it has whole (every file's, or
        the first file's with ``first_only``)."""
        if not records:
            return {}
        found = await self.headers.get([r.id for r in records], first_only)
        want = {r.id: 1 if first_only else len(r.file_sizes) for r in records}
        return {k: v for k, v in found.items() if len(v) == want[k]}

    async def instances(self, owner: str, *, study_uid: str = "", series_uid: str = "",
                        sop_uid: str = "") -> list[Instance]:
        """The instances of ``owner``'s stored series (of one study, series or instance),
        each once (an instance stored in two images, its instance image and its series'
        volume for a moment, is the volume's)."""
        out, seen = [], set()
        records = await self.records(owner, study_uid=study_uid, series_uid=series_uid)
        # A series' volume before its instance images (removed once it is complete).
        records.sort(key=lambda r: (-len(r.file_sizes), r.created_at))
        if sop_uid:         # only the images that may hold it (those that list theirs)
            records = [r for r in records if not r.metadata.get("sop_instance_uids")
                       or sop_uid in r.metadata["sop_instance_uids"]]
        await self._load(records)
        for record in records:
            for k, (header, body) in enumerate(await self._all_headers(record)):
                sop = str(header.get("SOPInstanceUID", ""))
                if sop in seen or (sop_uid and sop != sop_uid):
                    continue
                seen.add(sop)
                out.append(Instance(record, header, k, body))
        return out

    async def _load(self, records: list[ImageRecord]) -> None:
        """Cache the catalog's headers of those of ``records`` not cached (one query)."""
        kept = await self._from_catalog([r for r in records if r.id not in self._all])
        for image_id, texts in kept.items():
            self._keep(self._all, image_id,
                       await asyncio.to_thread(lambda t=texts: [from_json(x) for x in t]))

    async def _all_headers(self, record: ImageRecord) -> list[Header]:
        headers = self._all.get(record.id)
        if headers is None:
            await self._load([record])
            headers = self._all.get(record.id)
        if headers is None:
            path = str(self.store.present(record.blob("dicom")))
            read = await asyncio.to_thread(_headers, path, record.file_sizes, False)
            await self.headers.put(record.id, [text for _, text in read])
            headers = self._keep(self._all, record.id, [h for h, _ in read])
        return headers

    async def instances_of(self, record: ImageRecord) -> list[Instance]:
        """The instances of one stored image with DICOM files, in its files' order."""
        return [Instance(record, h, k, body)
                for k, (h, body) in enumerate(await self._all_headers(record))]

    def answer(self, inst: Instance, asked: tuple, make) -> dict:
        """The answer ``make(inst)`` for the attributes ``asked`` names, made once per
        instance and kind of query (images never change once stored)."""
        key = (inst.record.id, inst.index, asked)
        got = self._answers.get(key)
        if got is None:
            got = make(inst)
            self._keep(self._answers, key, got, _ANSWERS)
        return got
