"""The DICOMweb resources of the HTTP door (under ``/dicomweb``): each handler
authenticates the caller (door.py), checks its role, calls the store's services for the
caller's own images only, and writes one audit entry with the outcome, as the gRPC
door's calls do. An id of another subscriber is answered as an unknown one (404).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from medcompute.server.dicomnet.ingress import Ingress
from medcompute.server.dicomweb import qido, stow, wado
from medcompute.server.dicomweb.door import (
    PROCESS,
    READ,
    WRITE,
    Door,
    HttpError,
    error_body,
    http_status,
)
from medcompute.server.dicomweb.index import Index, Instance
from medcompute.server.dicomweb.processed import Processing, parse_processing
from medcompute.server.errors import MedcomputeError, NotFound
from medcompute.server.storage.images import BlobRef
from medcompute.server.store.images import ImageStore
from medcompute.server.store.versions import ORIGINAL, ROLE_PREFIX

__all__ = ["DicomWeb", "refusal", "PREFIX"]

log = logging.getLogger(__name__)

PREFIX = "/dicomweb"
DICOM_JSON = "application/dicom+json"


def refusal(exc: Exception) -> Response:
    """The response to a refused request: status, JSON body and Warning header."""
    if isinstance(exc, HttpError):
        status, code, field, message = exc.status, "HTTP", exc.field, exc.message
    elif isinstance(exc, MedcomputeError):
        status, code, field, message = http_status(exc), exc.code_name, exc.field, exc.message
    else:
        status, code, field, message = 500, "INTERNAL", "", "internal error; see the log"
    text = f"{field}: {message}" if field else message
    warning = '299 medcompute "' + text.replace('"', "'").encode("ascii", "replace")\
        .decode()[:400] + '"'
    return JSONResponse(error_body(status, code, field or "", message), status_code=status,
                        headers={"Warning": warning})


class DicomWeb:
    def __init__(self, store: ImageStore, door: Door, ingress: Ingress, *,
                 ae_title: str, max_body: int, processing: Processing):
        self.store = store
        self.processing = processing
        self.door = door
        self.ingress = ingress
        self.index = Index(store)
        self.ae_title = ae_title
        self.max_body = max_body

    async def serve(self, request: Request, action: str, roles, handle) -> Response:
        """Run ``handle(request, principal)`` as ``action`` for a caller with one of
        ``roles``; refusals answered by :func:`refusal`, every outcome audited."""
        principal, object_id = None, request.path_params.get("study", "")
        try:
            principal = await self.door.caller(request.headers, request.cookies)
            self.door.authorize(principal, roles)
            response = await handle(request, principal)
        except Exception as exc:
            if not isinstance(exc, (HttpError, MedcomputeError)):
                log.exception("dicomweb: %s failed", action)
            response = refusal(exc)
            code = exc.code_name if isinstance(exc, MedcomputeError) else str(response.status_code)
            await self.door.record(principal, action, _digest(object_id), code,
                                   exc.details if hasattr(exc, "details") else "internal",
                                   source=request.client.host if request.client else "")
            return response
        await self.door.record(principal, action, _digest(object_id), "OK",
                               getattr(request.state, "audit_detail", ""))
        return response

    @staticmethod
    def base_url(request: Request) -> str:
        """This service's URL as the caller reached it, for the URLs it answers. A Host
        header without the port (some clients send one) gets the port it came in on."""
        url = request.base_url
        server = request.scope.get("server") or ("", None)
        default = {"http": 80, "https": 443}.get(url.scheme)
        if url.port is None and server[1] and server[1] != default:
            url = url.replace(port=server[1])
        return str(url).rstrip("/") + PREFIX

    # -- QIDO-RS ----------------------------------------------------------------------
    async def search(self, request: Request) -> Response:
        level = request.url.path.rstrip("/").rsplit("/", 1)[-1]

        async def handle(request, principal):
            wado.accepts(request.headers.get("accept", ""), (DICOM_JSON, "application/json"))
            q = qido.parse_query(list(request.query_params.multi_items()))
            found, more = await qido.search(self.index, principal.subscriber, level, q,
                                            study_uid=request.path_params.get("study", ""),
                                            series_uid=request.path_params.get("series", ""))
            warnings = [w for w, on in ((qido.FUZZY_WARNING, q.fuzzy),
                                        (qido.MORE_WARNING, more)) if on]
            headers = {"Warning": ", ".join(warnings)} if warnings else {}
            return JSONResponse(found, media_type=DICOM_JSON, headers=headers)
        return await self.serve(request, f"dicomweb.search.{level}", READ, handle)

    # -- WADO-RS ----------------------------------------------------------------------
    async def _instances(self, request: Request, owner: str) -> list[Instance]:
        p = request.path_params
        found = await self.index.instances(owner, study_uid=p.get("study", ""),
                                           series_uid=p.get("series", ""),
                                           sop_uid=p.get("instance", ""))
        if not found:
            name = "instance" if "instance" in p else "series" if "series" in p else "study"
            raise NotFound(f"no stored {name} with this UID", name)
        return found

    async def _readable(self, found: list[Instance], by: str) -> None:
        """FailedPrecondition (409) when a study's reading status does not serve the
        original; then each image counted as fetched (the data fee)."""
        records = {i.record.id: i.record for i in found}
        for record in records.values():
            await self.store.readable(record, ORIGINAL)
        for record in records.values():
            await self.store.fetched(record, by)

    async def retrieve(self, request: Request) -> Response:
        async def handle(request, principal):
            found = await self._instances(request, principal.subscriber)
            syntaxes = {wado.part_type("application/dicom", i) for i in found}
            stored = syntaxes.pop().split("=")[-1] if len(syntaxes) == 1 else ""
            asked = wado.syntax_asked(request.headers.get("accept", ""), stored)
            if not asked:
                await self._readable(found, principal.subscriber)
                return self._send(found)
            return await self._send_version(found, asked, principal.subscriber)
        return await self.serve(request, "dicomweb.retrieve", READ, handle)

    async def _send_version(self, found: list[Instance], syntax: str, by: str) -> Response:
        """The instances' files of the store's JPEG 2000 version in ``syntax`` (made now
        where it was not), as the study's reading status allows that version."""
        lossless = syntax == wado.LOSSLESS_SYNTAX
        spec = next((s for s in self.store.versions.specs if s.lossless == lossless), None)
        if spec is None:
            raise HttpError(406, f"this server keeps no {'lossless' if lossless else 'lossy'}"
                            f" version (serve --version); transfer syntax {syntax} is not "
                            "offered", "Accept")
        records = {i.record.id: i.record for i in found}
        made = {}
        for record in records.values():
            await self.store.readable(record, spec.name)
            made[record.id] = await self.store.versions.get(record, spec)
        for record in records.values():
            await self.store.fetched(record, by)
        boundary = uuid.uuid4().hex

        async def body():
            for inst in found:
                version = made[inst.record.id]
                path = str(self.store.present(BlobRef(ROLE_PREFIX + version.name,
                                                      version.digest, version.stored_bytes)))
                data = await asyncio.to_thread(wado.instance_bytes, path, inst,
                                               version.file_sizes)
                yield wado.part_head(boundary, f"application/dicom; transfer-syntax={syntax}")
                yield data
                yield b"\r\n"
            yield wado.closing(boundary)
        return StreamingResponse(body(), media_type=(
            f'multipart/related; type="application/dicom"; boundary={boundary}'))

    def _send(self, found: list[Instance], headers: dict | None = None) -> Response:
        """The instances as stored, one part each, read as they are sent."""
        boundary = uuid.uuid4().hex

        async def body():
            for inst in found:
                path = str(self.store.present(inst.record.blob("dicom")))
                data = await asyncio.to_thread(wado.instance_bytes, path, inst)
                yield wado.part_head(boundary, wado.part_type("application/dicom", inst))
                yield data
                yield b"\r\n"
            yield wado.closing(boundary)
        return StreamingResponse(body(), headers=headers, media_type=(
            f'multipart/related; type="application/dicom"; boundary={boundary}'))

    async def metadata(self, request: Request) -> Response:
        async def handle(request, principal):
            wado.accepts(request.headers.get("accept", ""), (DICOM_JSON, "application/json"))
            found = await self._instances(request, principal.subscriber)
            base = self.base_url(request)
            return JSONResponse([wado.metadata(i, (
                f"{base}/studies/{i.header.get('StudyInstanceUID', '')}/series/"
                f"{i.header.get('SeriesInstanceUID', '')}/instances/{i.sop_uid}/bulk"))
                for i in found], media_type=DICOM_JSON)
        return await self.serve(request, "dicomweb.metadata", READ, handle)

    async def _one(self, request: Request, principal) -> tuple[str, Instance]:
        found = await self._instances(request, principal.subscriber)
        await self._readable(found[:1], principal.subscriber)
        return str(self.store.present(found[0].record.blob("dicom"))), found[0]

    async def frames(self, request: Request) -> Response:
        async def handle(request, principal):
            wado.accepts(request.headers.get("accept", ""), ("application/octet-stream",),
                         syntax=wado.UNCOMPRESSED, multipart_only=True)
            path, inst = await self._one(request, principal)
            data = await asyncio.to_thread(wado.frames, path, inst,
                                           request.path_params["frames"])
            return _multipart("application/octet-stream", data,
                              part="application/octet-stream; "
                              f"transfer-syntax={wado.UNCOMPRESSED}")
        return await self.serve(request, "dicomweb.frames", READ, handle)

    async def bulk(self, request: Request) -> Response:
        async def handle(request, principal):
            wado.accepts(request.headers.get("accept", ""), ("application/octet-stream",),
                         multipart_only=True)
            path, inst = await self._one(request, principal)
            data = await asyncio.to_thread(wado.bulk, path, inst, request.path_params["tag"])
            return _multipart("application/octet-stream", [data])
        return await self.serve(request, "dicomweb.bulk", READ, handle)

    async def rendered(self, request: Request) -> Response:
        async def handle(request, principal):
            media = wado.accepts(request.headers.get("accept", ""), wado.RENDERED_TYPES)
            window = wado.window_of(request.query_params.get("window", ""))
            quality = request.query_params.get("quality", "90")
            if not quality.isdigit() or not 1 <= int(quality) <= 100:
                raise HttpError(400, f"expected 1 to 100, got {quality[:16]!r}", "quality")
            unknown = set(request.query_params) - {"window", "quality"}
            if unknown:
                raise HttpError(400, "unknown query key; expected window or quality",
                                sorted(unknown)[0])
            path, inst = await self._one(request, principal)
            frame = int(request.path_params.get("frame", 1))
            data = await asyncio.to_thread(wado.rendered, path, inst, media, window, frame,
                                           int(quality))
            return Response(data, media_type=media)
        return await self.serve(request, "dicomweb.rendered", READ, handle)

    # -- processing on retrieve ---------------------------------------------------------
    async def processed(self, request: Request) -> Response:
        async def handle(request, principal):
            accept = request.headers.get("accept", "")
            rendered = "image/" in accept
            media = (wado.accepts(accept, wado.RENDERED_TYPES) if rendered else
                     wado.accepts(accept, ("application/dicom",), multipart_only=True))
            process = parse_processing(list(request.query_params.multi_items()))
            window = wado.window_of(request.query_params.get("window", ""))
            study, series = request.path_params["study"], request.path_params["series"]
            records = await self.index.records(principal.subscriber, study_uid=study,
                                               series_uid=series)
            if not records:
                raise NotFound("no stored series with this UID", "series")
            source = self.processing.source(records)
            await self.store.readable(source, ORIGINAL)
            job_id, derived = await self.processing.run(process, source,
                                                        subscriber=principal.subscriber)
            request.state.audit_detail = f"job {job_id}"
            series = derived.metadata.get("series_instance_uid", "")
            result = await self.index.instances_of(derived)
            await self.store.fetched(derived, principal.subscriber)
            headers = {"Content-Location": f"{self.base_url(request)}/studies/{study}/series/"
                       f"{series}", "Medcompute-Job": job_id}
            if not rendered:
                return self._send(result, headers)
            first = min(result, key=lambda i: int(i.header.get("InstanceNumber", 0) or 0))
            path = str(self.store.present(first.record.blob("dicom")))
            data = await asyncio.to_thread(wado.rendered, path, first, media, window)
            return Response(data, media_type=media, headers=headers)
        return await self.serve(request, "dicomweb.processed", PROCESS, handle)

    # -- STOW-RS ----------------------------------------------------------------------
    async def store_instances(self, request: Request) -> Response:
        async def handle(request, principal):
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                raise HttpError(413, f"the body has {length} bytes; this server takes at most "
                                f"{self.max_body} (serve --http-max-body-mb)", "body")
            wado.accepts(request.headers.get("accept", ""), (DICOM_JSON, "application/json"))
            parts = await stow.read_parts(request.headers.get("content-type", ""),
                                          request.stream(), self.max_body)
            base = self.base_url(request)
            outcome = await stow.store_parts(
                self.ingress, parts, owner=principal.subscriber, called=self.ae_title,
                study_uid=request.path_params.get("study", ""),
                url_of=lambda st, se, sop: f"{base}/studies/{st}/series/{se}/instances/{sop}")
            study = request.path_params.get("study", "")
            answer = outcome.answer(f"{base}/studies/{study}" if study else base)
            headers = {}
            if outcome.reasons:
                headers["Warning"] = '299 medcompute "' + "; ".join(outcome.reasons)\
                    .replace('"', "'").encode("ascii", "replace").decode()[:800] + '"'
            return JSONResponse(answer.to_json_dict(), status_code=outcome.status,
                                media_type=DICOM_JSON, headers=headers)
        return await self.serve(request, "dicomweb.store", WRITE, handle)


def _multipart(kind: str, parts: list[bytes], part: str = "") -> Response:
    boundary = uuid.uuid4().hex
    body = b"".join(wado.multipart(((part or kind, p) for p in parts), boundary))
    return Response(body, media_type=f'multipart/related; type="{kind}"; boundary={boundary}')


def _digest(uid: str) -> str:
    """The audit names a study by a digest of its UID (never the UID), as the gRPC door."""
    return "study:" + hashlib.sha256(uid.encode()).hexdigest()[:16] if uid else ""
