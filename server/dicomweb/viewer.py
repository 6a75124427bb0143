"""A web viewer's built application served from the HTTP port (``serve --http-viewer
DIR``; the OHIF Viewer's ``dist/`` folder, which npm's ``@ohif/app`` ships): its files at
``/``, every other path answered with its ``index.html`` (the viewer routes in the
browser), and its ``app-config.js`` written here, naming this service's ``/dicomweb`` as
its one DICOMweb data source. Served from the DICOMweb origin, the viewer's requests
carry the console's session cookie: log in at ``/console`` first.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from medcompute.server.errors import FailedPrecondition

__all__ = ["viewer_routes", "APP_CONFIG"]

#: The OHIF configuration (window.config): this origin's DICOMweb, read with WADO-RS frames.
APP_CONFIG = """window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  showStudyList: true,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'medcompute',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'medcompute',
      configuration: {
        friendlyName: 'medcompute',
        name: 'medcompute',
        wadoUriRoot: window.location.origin + '/dicomweb',
        qidoRoot: window.location.origin + '/dicomweb',
        wadoRoot: window.location.origin + '/dicomweb',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata',
        bulkDataURI: { enabled: true },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


class _App(StaticFiles):
    """Static files; a path that is no file is the application's (index.html)."""

    async def get_response(self, path: str, scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            return await super().get_response("index.html", scope)


async def _config(request: Request) -> Response:
    return Response(APP_CONFIG, media_type="text/javascript",
                    headers={"Cache-Control": "no-cache"})


def viewer_routes(folder: Path | None) -> list:
    if folder is None:
        return []
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise FailedPrecondition(f"{folder} has no index.html (expected a built viewer, e.g. "
                                 "OHIF's dist/ folder: make ohif)", "--http-viewer")
    return [Route("/app-config.js", _config), Mount("/", _App(directory=folder))]
