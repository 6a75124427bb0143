"""The console under ``/console``: operators and subscribers log in with an API key and
see their jobs (live: the page reloads while one runs), deliveries (results delivered to
their inbox, and DICOM pushes with each node's status), usage and the month's invoice,
and their stored studies with previews, from which a processing of a series starts.

A log-in keeps the key in memory on the server (door.Sessions), behind a random session
id in a cookie (HttpOnly, SameSite=Strict, Secure over TLS); each page verifies the key
again (a revoked key ends its sessions) and applies its roles and subscriber, as the
DICOMweb resources do, which take the same cookie (a viewer served from this origin).
Forms carry the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
from html import escape
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from medcompute.server.dicomweb import pages, wado
from medcompute.server.dicomweb.door import (
    COOKIE,
    PROCESS,
    READ,
    SESSION_SECONDS,
    Door,
    HttpError,
    http_status,
)
from medcompute.server.dicomweb.index import Index
from medcompute.server.dicomweb.processed import Processing, parse_processing
from medcompute.server.errors import MedcomputeError, Unauthenticated
from medcompute.server.storage.keys import Principal
from medcompute.server.store.versions import ORIGINAL

__all__ = ["Console"]


class Console:
    def __init__(self, door: Door, index: Index, runner, billing, pushes,
                 processing: Processing):
        self.door = door
        self.index = index
        self.store = index.store
        self.runner = runner              # JobRunner
        self.billing = billing            # BillingService
        self.pushes = pushes              # PushBook, or None without a DICOM node
        self.processing = processing
        self.sessions = door.sessions

    def routes(self) -> list:
        return [
            Route("/console", self.home), Route("/console/", self.home),
            Route("/console/login", self.login_form, methods=["GET"]),
            Route("/console/login", self.login, methods=["POST"]),
            Route("/console/logout", self.logout, methods=["POST"]),
            Route("/console/jobs", self.jobs), Route("/console/deliveries", self.deliveries),
            Route("/console/usage", self.usage), Route("/console/studies", self.studies),
            Route("/console/preview/{study}/{series}", self.preview),
            Route("/console/process", self.process, methods=["POST"]),
        ]

    # -- sessions -----------------------------------------------------------------------
    async def _session(self, request: Request) -> tuple[Principal, str]:
        held = self.sessions.get(request.cookies.get(COOKIE, ""))
        if held is None:
            raise Unauthenticated("log in first")
        principal = await self.door.principal(f"Bearer {held[0]}" if held[0] else "")
        return principal, held[1]

    async def _page(self, request: Request, roles, render) -> Response:
        """``render(principal, csrf)`` -> the page's HTML, for a logged-in caller."""
        try:
            principal, csrf = await self._session(request)
        except Unauthenticated:
            return RedirectResponse("/console/login?next=" + quote(request.url.path), 303)
        try:
            self.door.authorize(principal, roles)
            html = await render(principal, csrf)
        except (HttpError, MedcomputeError) as exc:
            status = exc.status if isinstance(exc, HttpError) else http_status(exc)
            return HTMLResponse(pages.page("Refused", f'<p class="error">'
                                           f'{escape(exc.details)}</p>',
                                           who=principal.subscriber, csrf=csrf), status)
        return HTMLResponse(html)

    async def login_form(self, request: Request) -> Response:
        return HTMLResponse(pages.login_page(after=request.query_params.get(
            "next", "/console/jobs")))

    async def login(self, request: Request) -> Response:
        data = await request.form()
        key = str(data.get("key", "")).strip()
        after = unquote(str(data.get("next", "/console/jobs")))
        if not after.startswith("/console/") or after.startswith("//"):
            after = "/console/jobs"
        try:
            principal = await self.door.principal(f"Bearer {key}" if key else "")
        except Unauthenticated as exc:
            await self.door.record(None, "console.login", "", "UNAUTHENTICATED", exc.message,
                                   source=request.client.host if request.client else "")
            return HTMLResponse(pages.login_page(exc.message, after), 401)
        sid = self.sessions.open(key)
        await self.door.record(principal, "console.login", "", "OK")
        response = RedirectResponse(after, 303)
        response.set_cookie(COOKIE, sid, max_age=int(SESSION_SECONDS), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https",
                            path="/")
        return response

    async def _checked_form(self, request: Request, csrf: str):
        data = await request.form()
        if not hmac.compare_digest(str(data.get("csrf", "")), csrf):
            raise HttpError(403, "the form's token is not this session's; reload the page",
                            "csrf")
        return data

    async def logout(self, request: Request) -> Response:
        sid = request.cookies.get(COOKIE, "")
        held = self.sessions.get(sid)
        if held is not None:
            data = await request.form()
            if hmac.compare_digest(str(data.get("csrf", "")), held[1]):
                self.sessions.close(sid)
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/console/jobs", 303)

    # -- pages --------------------------------------------------------------------------
    async def jobs(self, request: Request) -> Response:
        async def render(principal, csrf):
            page = await self.runner.list(principal.subscriber, page_size=100)
            rows = [(f'<span class="{j.state.value}">{j.state.value}</span>', j.job_id,
                     " > ".join(j.operations), j.label, f"{j.progress:.0%}",
                     pages.when(j.created_at), pages.when(j.finished_at), j.error)
                    for j in page.jobs]
            live = any(not j.state.terminal for j in page.jobs)
            body = pages.table(("state", "job", "operations", "label", "progress",
                                "created (UTC)", "finished (UTC)", "error"), rows,
                               raw_columns=(0,), row_id="jobs")
            return pages.page("Jobs", body or "<p>No jobs.</p>", who=principal.subscriber,
                              csrf=csrf, refresh=3 if live else 0)
        return await self._page(request, READ + PROCESS, render)

    async def deliveries(self, request: Request) -> Response:
        async def render(principal, csrf):
            inbox = await self.runner.inbox(principal.subscriber, page_size=100)
            rows = [(d.seq, d.job_id, d.sender, " > ".join(d.operations), d.label,
                     pages.when(d.delivered_at), pages.when(d.fetched_at)) for d in inbox]
            body = "<h2>Delivered to this subscriber</h2>" + pages.table(
                ("#", "job", "sender", "operations", "label", "delivered", "fetched"), rows)
            if self.pushes is not None:
                pushes = await self.pushes.pushes(principal.subscriber)
                body += "<h2>Sent to DICOM nodes</h2>" + pages.table(
                    ("job", "node", "recipient", "state", "instances delivered", "tries",
                     "storage commitment", "DICOM status / reason", "updated"),
                    [(p.job_id, p.node, p.recipient, p.state, p.delivered, p.attempts,
                      p.proof or "", p.reason, pages.when(p.updated_at)) for p in pushes])
                instances = await self.pushes.instance_statuses(p.push_id for p in pushes)
                body += "<h2>Each instance sent</h2>" + pages.table(
                    ("job", "node", "#", "SOP Instance UID", "C-STORE status",
                     "storage commitment"),
                    [(p.job_id, p.node, i.position + 1, i.sop_instance_uid, i.shown,
                      i.commitment) for p in pushes for i in instances[p.push_id]])
            return pages.page("Deliveries", body, who=principal.subscriber, csrf=csrf)
        return await self._page(request, READ + PROCESS, render)

    async def usage(self, request: Request) -> Response:
        async def render(principal, csrf):
            report = await self.billing.usage(principal)
            totals = pages.table(("measure", "total"), sorted(
                (k, v) for k, v in report.totals.items() if not isinstance(v, dict)))
            month = request.query_params.get(
                "month", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m"))
            bill = await self.billing.invoice(principal, month)
            lines = [(line["item"], line["quantity"], line["unit_price"], line["amount"])
                     for sub in bill["subscribers"] for line in sub["lines"]]
            body = (f"<h2>Usage</h2>{totals}<h2>Invoice {escape(month)} "
                    f"({escape(bill['currency'])})</h2>" + pages.table(
                        ("item", "quantity", "unit price", "amount"), lines)
                    + f"<p>Total: <b id=\"total\">{escape(bill['total'])}</b></p>")
            return pages.page("Usage and invoices", body, who=principal.subscriber, csrf=csrf)
        return await self._page(request, READ + PROCESS, render)

    async def studies(self, request: Request) -> Response:
        async def render(principal, csrf):
            rows = []
            for s in await self.index.series(principal.subscriber):
                h = s.header
                preview = (f'<img class="preview" alt="preview" src="/console/preview/'
                           f'{quote(s.study_uid)}/{quote(s.series_uid)}">')
                start = pages.form("/console/process", csrf, (
                    f'<input type="hidden" name="study" value="{escape(s.study_uid)}">'
                    f'<input type="hidden" name="series" value="{escape(s.series_uid)}">'
                    '<input name="ops" size="28" value="gaussian:sigma_mm=1">'), "Process")
                rows.append((preview, str(h.get("StudyDate", "")), str(h.get("Modality", "")),
                             str(h.get("SeriesDescription", "")), s.instances,
                             s.record.kind, start))
            body = pages.table(("preview", "study date", "modality", "series", "instances",
                                "kind", "start a processing (operations, ; between)"),
                               rows, raw_columns=(0, 6), row_id="studies")
            return pages.page("Studies", body, who=principal.subscriber, csrf=csrf)
        return await self._page(request, READ, render)

    async def preview(self, request: Request) -> Response:
        try:
            principal, _ = await self._session(request)
            self.door.authorize(principal, READ)
            found = await self.index.instances(principal.subscriber,
                                               study_uid=request.path_params["study"],
                                               series_uid=request.path_params["series"])
            if not found:
                raise HttpError(404, "no stored series with this UID", "series")
            found.sort(key=lambda i: int(i.header.get("InstanceNumber", 0) or 0))
            middle = found[len(found) // 2]
            await self.store.readable(middle.record, ORIGINAL)
            path = str(self.store.present(middle.record.blob("dicom")))
            data = await asyncio.to_thread(wado.rendered, path, middle, "image/png", None)
        except (HttpError, MedcomputeError) as exc:
            status = exc.status if isinstance(exc, HttpError) else http_status(exc)
            return Response(exc.details, status_code=status, media_type="text/plain")
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    async def process(self, request: Request) -> Response:
        async def render(principal, csrf):
            data = await self._checked_form(request, csrf)
            ops = [o.strip() for o in str(data.get("ops", "")).split(";") if o.strip()]
            process = parse_processing([("op", o) for o in ops])
            records = await self.index.records(principal.subscriber,
                                               study_uid=str(data.get("study", "")),
                                               series_uid=str(data.get("series", "")))
            if not records:
                raise HttpError(404, "no stored series with this UID", "series")
            source = self.processing.source(records)
            await self.store.readable(source, ORIGINAL)
            view = await self.processing.submit(process, source, label="console processing",
                                                subscriber=principal.subscriber)
            await self.door.record(principal, "console.process", view.job_id, "OK")
            return pages.page("Processing started", f"<p>Job {escape(view.job_id)} started: "
                              f"{pages.link('/console/jobs', 'see it in the jobs')}.</p>",
                              who=principal.subscriber, csrf=csrf)
        return await self._page(request, PROCESS, render)
