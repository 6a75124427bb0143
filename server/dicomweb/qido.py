"""QIDO-RS (PS3.18 10.6): search for studies, series and instances.

A query names attributes by keyword (``PatientID``) or tag (``00100020``), each at most
once, plus the reserved keys ``limit``, ``offset``, ``includefield`` and
``fuzzymatching``; any other key is refused (400, naming it). Matching as PS3.4 C.2.2.2:
an empty value matches everything; ``*`` and ``?`` are wildcards; a UID list is
comma- or backslash-separated; a date or time ``A-B`` is a range (either end open).
Text matches exactly, case included. Fuzzy matching of person names is not offered:
``fuzzymatching=true`` is answered with exact matching and a ``Warning: 299`` header
saying so (PS3.18 8.3.4.1).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from medcompute.server.dicomweb.door import HttpError
from medcompute.server.dicomweb.index import Index

__all__ = ["Query", "parse_query", "search", "STUDY", "SERIES", "INSTANCE", "FUZZY_WARNING",
           "MORE_WARNING", "tag_of"]

STUDY = ("StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
         "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
         "StudyID", "StudyDescription")
SERIES = ("Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
          "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime")
INSTANCE = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
            "BitsAllocated", "NumberOfFrames")
#: Counted, not read from a header.
_COUNTED = ("ModalitiesInStudy", "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances")
_RESERVED = ("limit", "offset", "includefield", "fuzzymatching")
_RANGED = ("DA", "TM", "DT")
_RANGE = re.compile(r"^[0-9.+]*-[0-9.+]*$")
#: The most results one query answers (``limit`` defaults to it).
MAX_RESULTS = 10000
MORE_WARNING = ('299 medcompute "there are more results than limit let through: ask again '
                'with offset"')
FUZZY_WARNING = ('299 medcompute "fuzzymatching: fuzzy matching of person names is not '
                 'offered; the query was matched exactly"')


def tag_of(name: str, where: str) -> int:
    """The tag an attribute keyword or 8-hex-digit tag names; 400 otherwise."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        tag = int(name, 16)
        try:
            keyword_for_tag(tag)
            dictionary_VR(tag)
        except KeyError:
            raise HttpError(400, f"unknown attribute tag {name}", where) from None
        return tag
    tag = tag_for_keyword(name)
    if tag is None:
        raise HttpError(400, "unknown query key: expected a DICOM attribute keyword or "
                        "tag, or one of " + ", ".join(_RESERVED), where)
    return tag


def _count(value: str, name: str) -> int:
    if not value.isdigit():
        raise HttpError(400, f"expected a whole number of at least 0, got {value[:32]!r}", name)
    return int(value)


@dataclass
class Query:
    #: (tag, keyword, value) to match.
    match: list[tuple[int, str, str]] = field(default_factory=list)
    include: set[int] = field(default_factory=set)
    include_all: bool = False
    limit: int = MAX_RESULTS
    offset: int = 0
    fuzzy: bool = False


def parse_query(items: list[tuple[str, str]]) -> Query:
    """A query's keys and values, checked; 400 naming the first key that is wrong."""
    q, seen = Query(), set()
    for key, value in items:
        if key == "includefield":
            for name in filter(None, (v.strip() for v in value.split(","))):
                if name == "all":
                    q.include_all = True
                else:
                    q.include.add(tag_of(name, "includefield"))
        elif key in ("limit", "offset"):
            setattr(q, key, _count(value, key))
        elif key == "fuzzymatching":
            if value not in ("true", "false"):
                raise HttpError(400, f"expected true or false, got {value[:32]!r}", key)
            q.fuzzy = value == "true"
        else:
            tag = tag_of(key, key)
            if tag in seen:
                raise HttpError(400, "the attribute is named twice", key)
            seen.add(tag)
            if dictionary_VR(tag) in _RANGED and "-" in value and not _RANGE.match(value):
                raise HttpError(400, "expected a value or a range FROM-TO of digits, got "
                                f"{value[:32]!r}", key)
            q.match.append((tag, keyword_for_tag(tag), value))
    if q.limit > MAX_RESULTS:
        raise HttpError(400, f"at most {MAX_RESULTS}, got {q.limit}", "limit")
    return q


def matches(want: str, got, vr: str) -> bool:
    """PS3.4 C.2.2.2 matching of one attribute's value."""
    if not want or want == "*":
        return True
    got = "" if got is None else str(got).strip()
    if vr == "UI" and ("," in want or "\\" in want):
        return got in re.split(r"[,\\]", want)
    if vr in _RANGED and "-" in want:
        low, _, high = want.partition("-")
        return bool(got) and (not low or got >= low) and (not high or got[:len(high)] <= high)
    if "*" in want or "?" in want:
        return fnmatch.fnmatchcase(got, want.replace("[", "[[]"))
    return got == want


def _value(ds: Dataset, tag: int):
    try:
        element = ds.get(Tag(tag))
    except Exception:  # noqa: BLE001 - a value pydicom cannot convert: none
        return ""
    return "" if element is None or element.value is None else element.value


def _fits(ds: Dataset, q: Query, skip=()) -> bool:
    return all(matches(want, _value(ds, tag), dictionary_VR(tag)) for tag, kw, want in q.match
               if kw not in skip and kw not in _COUNTED)


def _vr(tag: int) -> str:
    """The VR of an attribute (the first of an ambiguous one's, "US or SS")."""
    return dictionary_VR(tag).split(" or ")[0]


def _reply(header: Dataset, keys, q: Query) -> Dataset:
    """The answer of one match: the level's keys, the matched and the included ones
    (``all``: every attribute but the pixel data), empty where the header lacks them."""
    out = Dataset()
    tags = {tag_for_keyword(k) for k in keys} | {t for t, _, _ in q.match} | q.include
    if q.include_all:
        tags |= {e.tag for e in header if e.tag.group != 0x7FE0}
    for tag in sorted(tags):
        if keyword_for_tag(tag) in _COUNTED:
            continue
        if tag in header:
            out[tag] = header[tag]
        else:
            out.add_new(tag, _vr(tag), None)
    return out


async def search(index: Index, owner: str, level: str, q: Query, *, study_uid: str = "",
                 series_uid: str = "") -> tuple[list[dict], bool]:
    """The DICOM JSON answers of ``owner``'s store to query ``q`` at ``level`` (studies,
    series, instances), within one study or series where given; and whether more
    matched than ``limit`` let through."""
    if level == "instances":
        keys = INSTANCE if series_uid else (
            (*SERIES, *INSTANCE) if study_uid else (*STUDY, *SERIES, *INSTANCE))
        asked = (keys, tuple(sorted(q.include)), q.include_all,
                 tuple(sorted(t for t, _, _ in q.match)))
        matched = [inst for inst in await index.instances(
            owner, study_uid=study_uid, series_uid=series_uid) if _fits(inst.header, q)]
        page = matched[q.offset:q.offset + q.limit]

        def make(inst):
            return _reply(inst.header, keys, q).to_json_dict(bulk_data_threshold=1 << 30)
        return ([index.answer(inst, asked, make) for inst in page],
                len(matched) > q.offset + q.limit)
    else:
        all_series = await index.series(owner, study_uid=study_uid, series_uid=series_uid)
        groups: dict[str, list] = {}
        for s in all_series:
            key = s.study_uid if level == "studies" else s.series_uid
            if key:
                groups.setdefault(key, []).append(s)
        found = []
        for members in groups.values():
            first = members[0].header
            sops = {sop for m in members for sop in (m.record.metadata.get(
                "sop_instance_uids") or [f"{m.record.id}/{k}" for k in range(m.instances)])}
            if level == "studies":
                modalities = sorted({str(m.header.get("Modality", "")) for m in members} - {""})
                wanted = next((w for _, kw, w in q.match if kw == "ModalitiesInStudy"), "")
                if wanted and not any(matches(wanted, m, "CS") for m in modalities):
                    continue
                if not _fits(first, q):
                    continue
                reply = _reply(first, STUDY, q)
                reply.ModalitiesInStudy = modalities
                reply.NumberOfStudyRelatedSeries = len({m.series_uid for m in members})
                reply.NumberOfStudyRelatedInstances = len(sops)
            else:
                if not _fits(first, q):
                    continue
                reply = _reply(first, SERIES if study_uid else (*STUDY, *SERIES), q)
                reply.NumberOfSeriesRelatedInstances = len(sops)
            found.append(reply)
    page = found[q.offset:q.offset + q.limit]
    return ([ds.to_json_dict(bulk_data_threshold=1 << 30) for ds in page],
            len(found) > q.offset + q.limit)
