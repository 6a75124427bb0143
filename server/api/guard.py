"""Who may call what: authentication, roles, limits and the audit trail of every call.

Every servicer method is declared with :func:`rpc`, which, before the method runs,
identifies the caller from its bearer token (and client certificate where a key is
bound to one), checks the role the call needs and the limits, and afterwards writes
one audit entry with the outcome. Errors are mapped to status codes by
:func:`medcompute.server.api.status.status_of`, the one place that does so.

A call that runs jobs names them (:meth:`Call.runs`). The end of such a job carries the
audit entry into the transaction that records the job's end and its usage record
(:func:`job_audit`), so that the three are on disk together or not at all; the call's
own entry is then not written a second time, unless the call ended otherwise than its
job (its caller went away while the result was being sent, say).

Without any API key in the data directory, a server on loopback serves every call as
the subscriber ``local`` with every role (the embedded default); the first key created
makes keys required for every call.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import inspect
import logging
import ssl
import time
from dataclasses import dataclass, field

import grpc

from medcompute.server.api.requests import READ_APART, check_ranges
from medcompute.server.api.status import rich_status
from medcompute.server.config import ServerConfig
from medcompute.server.errors import PermissionDenied, ResourceExhausted
from medcompute.server.jobs.states import State
from medcompute.server.storage import audit as audit_table
from medcompute.server.storage.audit import AuditLog, RefusedCalls
from medcompute.server.storage.keys import KeyStore, Principal
from medcompute.server.storage.space import storage_fault

__all__ = ["Call", "Guard", "JobAudit", "job_audit", "rpc", "CURRENT_CALL"]

log = logging.getLogger(__name__)


@dataclass
class Call:
    """One call as the guard sees it; the method fills in what it touched."""

    action: str
    principal: Principal | None = None
    object_id: str = ""
    detail: str = ""
    acquired: bool = False
    #: The jobs this call runs whose ends have not been recorded yet.
    jobs: set[str] = field(default_factory=set)
    #: One audit entry per job (a batch), besides the call's own; else the job's entry is
    #: the call's.
    per_job: bool = False
    #: (outcome, detail) of the call's entry, once written with its job's end.
    audited: tuple[str, str] | None = None
    #: The call's end is recorded (its limits released, its audit entry written).
    left: bool = False
    #: The caller's host, as gRPC reports its peer.
    source: str = ""

    def runs(self, *job_ids: str) -> None:
        """The call runs these jobs: the first one is the object it touched."""
        if not self.object_id and job_ids:
            self.object_id = job_ids[0]
        self.jobs.update(job_ids)


#: The call being served in this task (set by :func:`rpc` for every call).
CURRENT_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "medcompute_call", default=None)


@dataclass
class JobAudit:
    """The audit entry a job's end writes in its own transaction (see :func:`job_audit`)."""

    call: Call
    job_id: str
    outcome: str
    detail: str

    def write(self, db) -> None:
        """Insert the entry through ``db``, the connection of the job's transaction."""
        subscriber = self.call.principal.subscriber if self.call.principal else ""
        audit_table.add(db, audit_table.entry(subscriber, self.call.action, self.job_id,
                                              self.outcome, self.detail))

    def committed(self) -> None:
        """The job's transaction, and so this entry, is on disk."""
        self.call.jobs.discard(self.job_id)
        if not self.call.per_job:
            self.call.audited = (self.outcome, self.detail)


def job_audit(job) -> JobAudit | None:
    """The audit entry for the end of ``job``, when the call being served runs it."""
    call = CURRENT_CALL.get()
    if call is None or job.id not in call.jobs:
        return None
    if job.state in (State.SUCCEEDED, State.QUEUED):     # done; or, for a Submit, accepted
        return JobAudit(call, job.id, "OK", "" if call.per_job else call.detail)
    outcome = "CANCELLED" if job.state is State.CANCELLED else (job.error_code or "UNKNOWN")
    return JobAudit(call, job.id, outcome, job.error)


@dataclass
class _Counters:
    streams: int = 0
    jobs: int = 0
    jobs_by_subscriber: dict[str, int] = field(default_factory=dict)


def peer_host(peer: str) -> str:
    """The host of a gRPC peer (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:...``).

    >>> peer_host("ipv4:127.0.0.1:5000"), peer_host("ipv6:[::1]:5000")
    ('127.0.0.1', '::1')
    """
    kind, _, rest = (peer or "").partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    return kind or "unknown"


def certificate_sha256(context) -> str:
    """SHA-256 (hex) of the client certificate of a TLS call; empty without one."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return ""
    der = ssl.PEM_cert_to_DER_cert(pems[0].decode())
    return hashlib.sha256(der).hexdigest()


class Guard:
    def __init__(self, config: ServerConfig, keys: KeyStore, audit: AuditLog):
        self.config = config
        self.keys = keys
        self.audit = audit
        self.counters = _Counters()
        #: Refused unauthenticated calls: a few entries per source, the rest summarised.
        self.refused = RefusedCalls()
        self._summaries: dict[str, asyncio.Task] = {}

    async def authenticate(self, context) -> Principal:
        metadata = dict(context.invocation_metadata() or ())
        return await self.keys.authenticate(
            metadata.get("authorization", ""),
            anonymous=None if self.config.require_keys else self.config.subscriber,
            form="the metadata 'authorization: Bearer <key>'",
            hint=" (medcompute --api-key or $MEDCOMPUTE_API_KEY)",
            certificate=lambda: certificate_sha256(context))

    @staticmethod
    def authorize(principal: Principal, role: str | tuple[str, ...] | None) -> None:
        """PERMISSION_DENIED unless the caller has the role (or one of the roles)."""
        if role is None:
            return
        wanted = (role,) if isinstance(role, str) else role
        if not principal.roles.intersection(wanted):
            have = ", ".join(sorted(principal.roles)) or "none"
            need = " or ".join(wanted)
            raise PermissionDenied(f"this call needs the {need} role; the key has {have}")

    def acquire(self, principal: Principal, *, stream: bool, job: bool) -> None:
        """Take the call's places under the limits, or RESOURCE_EXHAUSTED at once."""
        c, cfg = self.counters, self.config
        if stream and c.streams >= cfg.max_streams:
            raise ResourceExhausted(f"the server has {c.streams} streams open, its limit "
                                    f"(max_streams={cfg.max_streams}); retry shortly")
        if job:
            mine = c.jobs_by_subscriber.get(principal.subscriber, 0)
            if mine >= cfg.max_jobs_per_subscriber:
                raise ResourceExhausted(
                    f"{mine} jobs of this subscriber are in progress, its limit "
                    f"(max_jobs_per_subscriber={cfg.max_jobs_per_subscriber}); retry when one "
                    "has finished")
            if c.jobs >= cfg.max_queue:
                raise ResourceExhausted(f"the server's queue is full ({c.jobs} jobs, "
                                        f"max_queue={cfg.max_queue}); retry shortly")
            c.jobs += 1
            c.jobs_by_subscriber[principal.subscriber] = mine + 1
        if stream:
            c.streams += 1

    def release(self, principal: Principal, *, stream: bool, job: bool) -> None:
        c = self.counters
        if stream:
            c.streams -= 1
        if job:
            c.jobs -= 1
            c.jobs_by_subscriber[principal.subscriber] -= 1

    async def record(self, call: Call, outcome: str, detail: str = "") -> None:
        subscriber = call.principal.subscriber if call.principal else ""
        try:
            if call.principal is None and outcome == "UNAUTHENTICATED":
                own, summaries = self.refused.admit(call.source, time.time())
                self._summarise_later(call.source)
                await self.audit.record_entries(summaries)
                if not own:
                    return                    # counted in its window's summary
            await self.audit.record(subscriber, call.action, call.object_id, outcome,
                                    detail or call.detail)
        except Exception as exc:  # the audit must not turn a served call into an error
            self._audit_failed(call.action, exc)

    @staticmethod
    def _audit_failed(action: str, exc: Exception) -> None:
        if storage_fault(exc) is not None:   # a full disk: reads are still served
            log.warning("could not write the audit entry of %s (%s)", action, exc)
        else:
            log.exception("could not write the audit entry of %s", action)

    def _summarise_later(self, source: str) -> None:
        """Write the summary of ``source``'s window when it ends, once some of its calls
        are only counted (a flood that stops still leaves its count)."""
        ends = self.refused.ends(source)
        if ends is None or source in self._summaries:
            return
        task = asyncio.get_running_loop().create_task(self._summarise(source, ends))
        self._summaries[source] = task
        task.add_done_callback(lambda _: self._summaries.pop(source, None))

    async def _summarise(self, source: str, ends: float) -> None:
        await asyncio.sleep(max(0.0, ends - time.time()))
        await self._write_summaries(self.refused.due(max(time.time(), ends)))

    async def _write_summaries(self, summaries) -> None:
        try:
            await self.audit.record_entries(summaries)
        except Exception as exc:
            self._audit_failed("the refused calls' summary", exc)

    async def close(self) -> None:
        """Write the summaries of the windows still open (the server stops)."""
        for task in list(self._summaries.values()):
            task.cancel()
        await self._write_summaries(self.refused.due(time.time(), every=True))


async def checked_header(request_iterator):
    """The messages of a streamed request, its header's fields range-checked as it is read
    (the pipeline and image descriptors where they are read, with their own messages)."""
    first = True
    async for message in request_iterator:
        if first and message.WhichOneof("msg") == "header":
            check_ranges(message.header, "header", skip=READ_APART)
        first = False
        yield message


def rpc(action: str, role: str | tuple[str, ...] | None, *, job: bool = False,
        audit: bool = True):
    """Declare a servicer method: the action it audits, the role it needs, and whether it
    runs a job (limits). The method gets a :class:`Call` as its last argument."""

    def decorate(method):
        streaming = inspect.isasyncgenfunction(method)
        iterated = method.__code__.co_varnames[1] == "request_iterator"
        stream = streaming or iterated

        async def enter(self, context, call: Call, request) -> None:
            guard: Guard = self.guard
            CURRENT_CALL.set(call)
            call.source = peer_host(context.peer())
            call.principal = await guard.authenticate(context)
            guard.authorize(call.principal, role)
            if not iterated:
                check_ranges(request)     # a streamed request's header: as it is read
            guard.acquire(call.principal, stream=stream, job=job)
            call.acquired = True

        async def leave(self, call: Call, outcome: tuple[str, str] | None) -> None:
            """Release the call's limits and write its audit entry, once."""
            if call.left:
                return
            call.left = True
            guard: Guard = self.guard
            if call.acquired:
                guard.release(call.principal, stream=stream, job=job)
            if audit:
                code, details = outcome or ("CANCELLED", "the caller went away")
                if call.audited is not None and call.audited[0] == code:
                    return               # written with its job's end
                await guard.record(call, code, details)

        async def refuse(self, context, call: Call, exc: Exception) -> None:
            code, details, trailers = rich_status(exc)
            # The entry is on disk before the caller hears of the failure.
            await asyncio.shield(leave(self, call, (code.name, details)))
            await context.abort(code, details, trailing_metadata=trailers)

        if streaming:
            @functools.wraps(method)
            async def streamed(self, request, context):
                call, outcome = Call(action), None
                try:
                    await enter(self, context, call, request)
                    if iterated:
                        request = checked_header(request)
                    async for item in method(self, request, context, call):
                        yield item
                    outcome = ("OK", "")
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:
                    await refuse(self, context, call, exc)
                finally:
                    await asyncio.shield(leave(self, call, outcome))
            return streamed

        @functools.wraps(method)
        async def unary(self, request, context):
            call, outcome = Call(action), None
            try:
                await enter(self, context, call, request)
                if iterated:
                    request = checked_header(request)
                result = await method(self, request, context, call)
                outcome = ("OK", "")
                return result
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await refuse(self, context, call, exc)
            finally:
                await asyncio.shield(leave(self, call, outcome))
        return unary

    return decorate
