"""Query/Retrieve of the service's own store over DICOM (study root and patient root:
C-FIND, C-MOVE, C-GET), with the isolation of the gRPC API: a calling AE sees only the
images of the subscriber it is registered for (its patients are those of its images).
The PATIENT level is answered only in the patient root model, as PS3.4 C.6 says. C-MOVE
sends only to that subscriber's own DICOM nodes (by AE title); any other destination is
answered A801 (move destination unknown).

Every stored image with DICOM files (a received series, a derived series) is one
series here; its attributes come from its first file's header. What is stored now has
its Study, Series and SOP Instance UIDs (``dicom.instance``); an image an earlier version
kept without one, or whose header no longer reads, is left out of the answers that need
it (it cannot be a study or a series) rather than failing everyone's query.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset

from medcompute.server.dicom.volume import quiet_pydicom
from medcompute.server.storage.images import FindFilter
from medcompute.server.store.images import ImageStore
from medcompute.server.worker.store_tasks import dicom_parts

__all__ = ["StoreIndex", "Entry", "LEVEL_KEYS"]

log = logging.getLogger(__name__)

#: What a response carries at each level (besides the keys a query asked for).
LEVEL_KEYS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                "NumberOfPatientRelatedStudies"),
    "STUDY": ("StudyInstanceUID", "StudyDate", "StudyDescription", "PatientID",
              "PatientName", "AccessionNumber", "ModalitiesInStudy"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription",
               "SeriesNumber", "NumberOfSeriesRelatedInstances"),
}
_PAGE = 500
#: Counted, not matched.
_COUNTS = ("ModalitiesInStudy", "NumberOfSeriesRelatedInstances",
           "NumberOfPatientRelatedStudies")


@dataclass(frozen=True)
class Entry:
    image_id: str
    header: Dataset            # the first file's attributes, no pixel data
    #: The SOP Instance UIDs of its files (where the catalog lacks them: one id per file).
    sops: tuple[str, ...]

    @property
    def instances(self) -> int:
        return len(self.sops)


def _sops(record) -> tuple[str, ...]:
    sops = record.metadata.get("sop_instance_uids") or []
    if len(sops) == len(record.file_sizes):
        return tuple(sops)
    return tuple(f"{record.id}/{k}" for k in range(len(record.file_sizes)))


def _header(path: str, file_sizes) -> Dataset:
    first = dicom_parts(path, file_sizes[:1])[0]
    return pydicom.dcmread(io.BytesIO(first), stop_before_pixels=True, force=True)


def _text(ds: Dataset, keyword: str) -> str:
    """The attribute as text; "" when it is absent or pydicom cannot read it."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a value pydicom cannot convert
        return ""
    return "" if value is None else str(value).strip()


def _matches(want, got) -> bool:
    """DICOM matching of one attribute: empty is universal, * and ? wildcards, a-b ranges
    for dates, a backslash list for UIDs."""
    want = "" if want is None else str(want)
    if not want or want == "*":
        return True
    got = "" if got is None else str(got)
    if "\\" in want:
        return got in want.split("\\")
    if "-" in want and want.replace("-", "").isdigit():
        low, _, high = want.partition("-")
        return (not low or got >= low) and (not high or got <= high)
    if "*" in want or "?" in want:
        import fnmatch

        return fnmatch.fnmatchcase(got.upper(), want.upper())
    return got == want


class StoreIndex:
    def __init__(self, store: ImageStore):
        self.store = store

    async def entries(self, owner: str) -> list[Entry]:
        out, token = [], ""
        while True:
            page, token = await self.store.find(FindFilter(), owner=owner, page_size=_PAGE,
                                                page_token=token)
            for record in page:
                blob = record.blob("dicom")
                if blob is None or not record.file_sizes:
                    continue
                path = str(self.store.blobs.path(blob.digest))
                try:
                    header = await asyncio.to_thread(_header, path, record.file_sizes)
                except Exception as exc:  # noqa: BLE001 - one unreadable image, not the query
                    log.warning("dicom: the header of stored image %s cannot be read (%s); "
                                "left out of queries", record.id, type(exc).__name__)
                    continue
                out.append(Entry(record.id, header, _sops(record)))
            if not token:
                return out

    async def find(self, owner: str, query: Dataset, *, patient_root: bool = False
                   ) -> list[Dataset]:
        """The C-FIND answers of ``owner``'s images to ``query``; ValueError for a level the
        model does not have. pydicom's value validation is off meanwhile: its warnings
        quote the values (a name, an id) of the query and the headers."""
        with quiet_pydicom():
            return await self._find(owner, query, patient_root)

    async def _find(self, owner: str, query: Dataset, patient_root: bool) -> list[Dataset]:
        level = str(query.get("QueryRetrieveLevel", "")).upper()
        if level not in LEVEL_KEYS or (level == "PATIENT" and not patient_root):
            raise ValueError(level)
        asked = [e.keyword for e in query if e.keyword and e.keyword != "QueryRetrieveLevel"]
        replies: dict[str, Dataset] = {}
        studies: dict[str, set[str]] = {}
        # A series may stand in several stored images (its instances one by one, or for a
        # moment after it completed both its volume and its instances): counted once each.
        instances: dict[str, set[str]] = {}
        for entry in await self.entries(owner):
            h = entry.header
            if not all(_matches(query.get(k), self._value(entry, k)) for k in asked
                       if k not in _COUNTS):
                continue
            if level == "STUDY" and query.get("ModalitiesInStudy") and not _matches(
                    query.ModalitiesInStudy, h.get("Modality", "")):
                continue
            key = _text(h, {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
                            "SERIES": "SeriesInstanceUID"}[level])
            if not key and level != "PATIENT":
                continue            # kept by an earlier version without the UID
            reply = replies.get(key)
            if reply is None:
                reply = Dataset()
                reply.QueryRetrieveLevel = level
                charset = self._value(entry, "SpecificCharacterSet")
                if charset:  # the repertoire of the values answered (PS3.4 C.4.1.1.3.1)
                    reply.SpecificCharacterSet = charset
                for k in dict.fromkeys([*LEVEL_KEYS[level], *asked]):
                    setattr(reply, k, self._value(entry, k))
                replies[key] = reply
                studies[key] = {_text(h, "StudyInstanceUID")}
                instances[key] = set(entry.sops)
            elif level == "SERIES":
                instances[key].update(entry.sops)
                if "NumberOfSeriesRelatedInstances" in reply:
                    reply.NumberOfSeriesRelatedInstances = len(instances[key])
            elif level == "PATIENT":
                studies[key].add(_text(h, "StudyInstanceUID"))
                reply.NumberOfPatientRelatedStudies = len(studies[key])
            elif level == "STUDY":
                mods = set(str(reply.ModalitiesInStudy).split("\\")) - {""}
                mods.add(str(h.get("Modality", "")))
                reply.ModalitiesInStudy = "\\".join(sorted(mods))
        return list(replies.values())

    @staticmethod
    def _value(entry: Entry, keyword: str):
        if keyword == "NumberOfSeriesRelatedInstances":
            return entry.instances
        if keyword == "NumberOfPatientRelatedStudies":
            return 1
        if keyword == "ModalitiesInStudy":
            return str(entry.header.get("Modality", ""))
        try:
            value = entry.header.get(keyword, "")
        except Exception:  # noqa: BLE001 - a value pydicom cannot convert: none
            return ""
        return "" if value is None else value

    async def datasets(self, owner: str, query: Dataset) -> list[Dataset]:
        """The instances a C-MOVE/C-GET identifier names (patient, study or series
        level); pydicom's value validation off, as for `find`."""
        with quiet_pydicom():
            return await self._datasets(owner, query)

    async def _datasets(self, owner: str, query: Dataset) -> list[Dataset]:
        patient = str(query.get("PatientID", ""))
        study = str(query.get("StudyInstanceUID", ""))
        series = str(query.get("SeriesInstanceUID", ""))
        if not study and not series and not patient:
            return []
        out, sent = [], set()
        for entry in await self.entries(owner):
            h = entry.header
            if patient and str(h.get("PatientID", "")) != patient:
                continue
            if study and not _matches(study, h.get("StudyInstanceUID")):
                continue
            if series and not _matches(series, h.get("SeriesInstanceUID")):
                continue
            record = await self.store.get(entry.image_id, owner=owner)
            path = str(self.store.blobs.path(record.blob("dicom").digest))
            parts = await asyncio.to_thread(dicom_parts, path, record.file_sizes)
            for part in parts:
                ds = pydicom.dcmread(io.BytesIO(bytes(part)))
                sop = _text(ds, "SOPInstanceUID")
                if sop and sop not in sent:       # an instance in two stored images once
                    sent.add(sop)
                    out.append(ds)
        return out
