"""Who calls the HTTP door, what they may do, and how a refusal reads.

A request names its API key as the gRPC door's calls do (``Authorization: Bearer
<key>``); without any key in the data directory, a server on loopback serves it as the
subscriber ``local`` with every role, as the gRPC door does (api/guard.py). Every
refusal is an :class:`HttpError` (or a domain error, mapped by :func:`http_status`) and
answers a JSON body naming the status, the field and what was expected, with a
``Warning: 299`` header carrying the same message (PS3.18 8.3.5.1).
"""

from __future__ import annotations

import logging
import secrets
import time

from medcompute.server.config import ServerConfig
from medcompute.server.errors import MedcomputeError, PermissionDenied
from medcompute.server.storage.audit import AuditLog, RefusedCalls
from medcompute.server.storage.keys import KeyStore, Principal

__all__ = ["Door", "HttpError", "Sessions", "http_status", "error_body", "READ", "WRITE",
           "PROCESS", "COOKIE"]

log = logging.getLogger(__name__)

#: The roles of each kind of request, as for the gRPC door's store and process calls.
READ = ("store", "receive")
WRITE = ("store",)
PROCESS = ("process",)

#: The console's session cookie; a viewer served from this origin is authenticated by it.
COOKIE = "medcompute_session"
SESSION_SECONDS = 8 * 3600.0
_MAX_SESSIONS = 10000

_STATUS = {
    "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "FAILED_PRECONDITION": 409, "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "DEADLINE_EXCEEDED": 504,
    "UNAVAILABLE": 503, "INTERNAL": 500,
}


class HttpError(Exception):
    """A refusal of the HTTP door itself (406, 413, 415, ...), or a domain error's."""

    def __init__(self, status: int, message: str, field: str = ""):
        self.status = status
        self.message = message
        self.field = field
        super().__init__(self.details)

    @property
    def details(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def http_status(exc: MedcomputeError) -> int:
    """The HTTP status of a domain error."""
    return _STATUS.get(exc.code_name, 500)


def error_body(status: int, code: str, field: str, message: str) -> dict:
    return {"error": {"status": status, "code": code, "field": field or "",
                      "message": message}}


class Sessions:
    """Logged-in browsers: a random session id (the cookie) -> the API key it logged in
    with, its CSRF token and its end. Held in memory: a restart logs everyone out."""

    def __init__(self, seconds: float = SESSION_SECONDS):
        self.seconds = seconds
        self._held: dict[str, tuple[str, str, float]] = {}

    def open(self, key: str) -> str:
        now = time.time()
        if len(self._held) >= _MAX_SESSIONS:
            self._held = {s: v for s, v in self._held.items() if v[2] > now}
        sid = secrets.token_urlsafe(32)
        self._held[sid] = (key, secrets.token_urlsafe(16), now + self.seconds)
        return sid

    def get(self, sid: str) -> tuple[str, str] | None:
        """(the key, the CSRF token) of a live session."""
        held = self._held.get(sid or "")
        if held is None or held[2] < time.time():
            self._held.pop(sid or "", None)
            return None
        return held[0], held[1]

    def close(self, sid: str) -> None:
        self._held.pop(sid or "", None)


class Door:
    def __init__(self, config: ServerConfig, keys: KeyStore, audit: AuditLog):
        self.config = config
        self.keys = keys
        self.audit = audit
        self.sessions = Sessions()
        #: Refused requests without a valid key: a few entries per source, the rest
        #: counted in a summary (as the gRPC door's guard does).
        self.refused = RefusedCalls()

    async def caller(self, headers, cookies) -> Principal:
        """The caller of a request: its ``Authorization`` header, else the console's
        session cookie (a viewer served from this origin), else no key."""
        header = headers.get("authorization", "")
        if not header and (held := self.sessions.get(cookies.get(COOKIE, ""))) is not None:
            return await self.principal(f"Bearer {held[0]}" if held[0] else "")
        return await self.principal(header)

    async def principal(self, authorization: str) -> Principal:
        """The caller of a request with this ``Authorization`` header (the same checks
        as the gRPC door's, KeyStore.authenticate; no client certificates here)."""
        return await self.keys.authenticate(
            authorization, anonymous=None if self.config.require_keys else self.config.subscriber,
            form="the header 'Authorization: Bearer <key>'")

    @staticmethod
    def authorize(principal: Principal, roles: tuple[str, ...]) -> None:
        if not principal.roles.intersection(roles):
            have = ", ".join(sorted(principal.roles)) or "none"
            raise PermissionDenied(f"this request needs the {' or '.join(roles)} role; the key "
                                   f"has {have}")

    async def record(self, principal: Principal | None, action: str, object_id: str,
                     outcome: str, detail: str = "", *, source: str = "") -> None:
        """One audit entry (a refused request without a valid key: unless its source
        already has its few in this window); a failure to write it is logged, never the
        caller's error."""
        try:
            if principal is None and outcome == "UNAUTHENTICATED":
                own, summaries = self.refused.admit(source, time.time())
                await self.audit.record_entries(summaries)
                if not own:
                    return
            await self.audit.record(principal.subscriber if principal else "", action,
                                    object_id, outcome, detail)
        except Exception:
            log.exception("could not write the audit entry of %s", action)

    async def close(self) -> None:
        """Write the summaries of the refused requests' windows still open."""
        try:
            await self.audit.record_entries(self.refused.due(time.time(), every=True))
        except Exception:
            log.exception("could not write the refused requests' summary")
