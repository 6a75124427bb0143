"""STOW-RS (PS3.18 10.5): store instances sent as ``multipart/related;
type="application/dicom"``.

The whole body is read and parsed (python-multipart) before anything is stored: a body
that is not well-formed multipart, or larger than the limit, stores nothing (400, 413).
Each instance then goes through the DICOM node's ingress, the path a C-STORE takes: the
validator every door shares (``dicom.instance``), written and fsynced before it counts
as stored, added to its series, which completes as a received series does and runs the
routing rules. An instance the validator refuses is not stored and is listed in the
answer's Failed SOP Sequence with the reason; the others are stored (202 when some
failed, 409 when none was stored).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pydicom
from pydicom.dataset import Dataset
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from medcompute.server.dicom.volume import quiet_pydicom
from medcompute.server.dicomnet.ingress import Ingress
from medcompute.server.dicomweb.door import HttpError
from medcompute.server.dicomweb.wado import media_ranges
from medcompute.server.errors import MedcomputeError

__all__ = ["Part", "read_parts", "store_parts", "CALLING_AE", "Outcome"]

#: The calling AE title a STOW-RS series is received from (routing rules may name it).
CALLING_AE = "DICOMWEB"
#: PS3.4 Annex B failure reasons.
_CANNOT_UNDERSTAND = 0xC000
_NOT_THIS_STUDY = 0xA900
_OUT_OF_RESOURCES = 0xA700
_MAX_PARTS = 100000


@dataclass
class Part:
    content_type: str = ""
    chunks: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def boundary_of(content_type: str) -> bytes:
    """The boundary of a STOW-RS body's ``Content-Type``; 415 unless it is
    ``multipart/related`` of ``application/dicom``."""
    ranges = media_ranges(content_type or "")
    kind, params = ranges[0] if ranges else ("", {})
    if kind != "multipart/related":
        raise HttpError(415, "expected multipart/related; type=\"application/dicom\"; "
                        f"boundary=..., got {(content_type or 'none')[:64]!r}", "Content-Type")
    inner = params.get("type", "application/dicom").lower()
    if inner != "application/dicom":
        raise HttpError(415, f"only application/dicom parts are stored, got type={inner!r} "
                        "(the JSON and XML metadata forms with bulk data are not taken)",
                        "Content-Type")
    boundary = params.get("boundary", "")
    if not boundary:
        raise HttpError(400, "the multipart boundary is missing", "Content-Type")
    return boundary.encode()


async def read_parts(content_type: str, body: AsyncIterator[bytes], limit: int
                     ) -> list[Part]:
    """Every part of the body; 400 when it is not well-formed multipart, 413 when it
    holds more than ``limit`` bytes, 415 for a part that is not application/dicom."""
    boundary = boundary_of(content_type)
    parts: list[Part] = []
    header: list[bytes] = [b"", b""]
    ended = []

    def on_part_begin():
        if len(parts) >= _MAX_PARTS:
            raise HttpError(413, f"at most {_MAX_PARTS} parts in one request", "body")
        parts.append(Part())

    def on_header_field(data, start, end):
        header[0] += data[start:end]

    def on_header_value(data, start, end):
        header[1] += data[start:end]

    def on_header_end():
        if header[0].decode("latin-1").strip().lower() == "content-type":
            parts[-1].content_type = header[1].decode("latin-1").strip()
        header[0] = header[1] = b""

    def on_part_data(data, start, end):
        parts[-1].chunks.append(bytes(data[start:end]))

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_part_data": on_part_data, "on_end": lambda: ended.append(True)})
    size = 0
    try:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"the body has more than {limit} bytes, this server's "
                                "limit (serve --http-max-body-mb)", "body")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise HttpError(400, f"the body is not well-formed multipart/related ({exc})",
                        "body") from None
    if not ended:
        raise HttpError(400, "the body ends before the multipart's closing boundary "
                        "(--boundary--)", "body")
    if not parts:
        raise HttpError(400, "the body has no part", "body")
    for k, part in enumerate(parts):
        kind = (part.content_type or "application/dicom").split(";")[0].strip().lower()
        if kind != "application/dicom":
            raise HttpError(415, f"expected application/dicom, got {kind[:64]!r}",
                            f"body.part[{k}].Content-Type")
    return parts


@dataclass
class Outcome:
    stored: list[Dataset] = field(default_factory=list)
    failed: list[Dataset] = field(default_factory=list)
    #: Why each failed instance was refused (its index among the parts, the reason).
    reasons: list[str] = field(default_factory=list)

    def answer(self, retrieve_url: str) -> Dataset:
        ds = Dataset()
        ds.RetrieveURL = retrieve_url
        if self.stored:
            ds.ReferencedSOPSequence = self.stored
        if self.failed:
            ds.FailedSOPSequence = self.failed
        return ds

    @property
    def status(self) -> int:
        return 200 if not self.failed else 202 if self.stored else 409


def _uids(data: bytes) -> tuple[str, str, str]:
    """SOP Class, SOP Instance and Study Instance UIDs of a part, as far as they read."""
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        return (str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")),
                str(ds.get("StudyInstanceUID", "")))
    except Exception:  # noqa: BLE001 - an unreadable part: the validator says why
        return "", "", ""


def _item(sop_class: str, sop: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop
    return item


async def store_parts(ingress: Ingress, parts: list[Part], *, owner: str, called: str,
                      study_uid: str, url_of) -> Outcome:
    """Store each part through ``ingress`` (within ``study_uid`` where given);
    ``url_of(study, series, sop)``: an instance's WADO-RS URL."""
    out = Outcome()
    for k, part in enumerate(parts):
        data = part.data
        sop_class, sop, study = _uids(data)
        if study_uid and study != study_uid:
            reason, code = (f"part[{k}]: the instance's StudyInstanceUID is not the study "
                            "of the request's path", _NOT_THIS_STUDY)
        else:
            try:
                received = await ingress.receive(data, owner=owner, calling=CALLING_AE,
                                                 called=called)
            except MedcomputeError as exc:
                code = (_OUT_OF_RESOURCES if exc.code_name == "RESOURCE_EXHAUSTED"
                        else _CANNOT_UNDERSTAND)
                reason = f"part[{k}]: {exc.details}"
            else:
                item = _item(sop_class, sop)
                item.RetrieveURL = url_of(study, received.series_uid, sop)
                out.stored.append(item)
                continue
        item = _item(sop_class, sop)
        item.FailureReason = code
        out.failed.append(item)
        out.reasons.append(reason)
    return out
