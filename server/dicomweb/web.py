"""The HTTP door's application: DICOMweb under ``/dicomweb``, with CORS for the
origins ``serve --http-cors`` names (a viewer served from elsewhere), and unknown paths
or methods answered in the door's error form."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.ingress import Ingress
from medcompute.server.dicomweb.console import Console
from medcompute.server.dicomweb.door import Door, HttpError
from medcompute.server.dicomweb.listener import HttpListener
from medcompute.server.dicomweb.processed import Processing
from medcompute.server.dicomweb.service import PREFIX, DicomWeb, refusal
from medcompute.server.dicomweb.viewer import viewer_routes
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.keys import KeyStore
from medcompute.server.store.images import ImageStore

__all__ = ["build_app", "resources", "http_door"]

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"


def resources(web: DicomWeb) -> list:
    """The DICOMweb routes (PS3.18 10.4 to 10.6)."""
    get, post = ["GET"], ["POST"]
    return [
        Route("/studies", web.search, methods=get),
        Route("/series", web.search, methods=get),
        Route("/instances", web.search, methods=get),
        Route(_STUDY + "/series", web.search, methods=get),
        Route(_STUDY + "/instances", web.search, methods=get),
        Route(_SERIES + "/instances", web.search, methods=get),
        Route("/studies", web.store_instances, methods=post),
        Route(_STUDY, web.store_instances, methods=post),
        Route(_STUDY, web.retrieve, methods=get),
        Route(_SERIES, web.retrieve, methods=get),
        Route(_INSTANCE, web.retrieve, methods=get),
        Route(_STUDY + "/metadata", web.metadata, methods=get),
        Route(_SERIES + "/metadata", web.metadata, methods=get),
        Route(_INSTANCE + "/metadata", web.metadata, methods=get),
        Route(_INSTANCE + "/frames/{frames}", web.frames, methods=get),
        Route(_INSTANCE + "/rendered", web.rendered, methods=get),
        Route(_INSTANCE + "/frames/{frame:int}/rendered", web.rendered, methods=get),
        Route(_INSTANCE + "/bulk/{tag}", web.bulk, methods=get),
        Route(_SERIES + "/processed", web.processed, methods=get),
    ]


async def _to_console(request) -> RedirectResponse:
    """Without a viewer, / is the console."""
    return RedirectResponse("/console/jobs", 303)


async def _http_error(request, exc: HTTPException):
    what = "no such resource" if exc.status_code == 404 else (
        "method not allowed here" if exc.status_code == 405 else str(exc.detail))
    return refusal(HttpError(exc.status_code, what, request.url.path[:200]))


def build_app(web: DicomWeb, *, cors: tuple[str, ...] = (), extra: list | None = None
              ) -> Starlette:
    middleware = []
    if cors:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Accept", "Content-Type"],
            expose_headers=["Warning", "Content-Type", "Content-Location", "Medcompute-Job"]))
    return Starlette(routes=[Mount(PREFIX, routes=resources(web)), *(extra or [])],
                     middleware=middleware, exception_handlers={HTTPException: _http_error})


def http_door(config: ServerConfig, store: ImageStore, keys: KeyStore, audit: AuditLog, *,
              ingress: Ingress, runner, billing, pushes) -> HttpListener:
    """The HTTP port of ``config`` (not yet listening): DICOMweb over ``store``, STOW-RS
    through ``ingress``, processing on retrieve as jobs of ``runner`` (a JobRunner), and
    the console (usage and invoices from ``billing``, DICOM pushes from ``pushes``)."""
    door = Door(config, keys, audit)
    processing = Processing(runner, store)
    web = DicomWeb(store, door, ingress, ae_title=config.dicom_ae_title,
                   max_body=config.http_max_body_bytes, processing=processing)
    console = Console(door, web.index, runner, billing, pushes, processing)
    viewer = viewer_routes(config.http_viewer) or [Route("/", _to_console)]
    app = build_app(web, cors=config.http_cors, extra=[*console.routes(), *viewer])
    return HttpListener(app, config.http_address,
                        config.http_port or 0, tls_cert=config.tls_cert,
                        tls_key=config.tls_key, grace=config.grace, on_stop=door.close)
