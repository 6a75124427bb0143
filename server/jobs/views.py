"""What the job runner answers with, as plain values, and what it needs of the API layer.

The runner returns these dataclasses; api/jobs.py turns them into messages. The catalog
keeps each asynchronous job's request and result description as the API layer encoded
them (bytes): the runner never parses them itself, it asks the :class:`JobCodec` the API
layer lends it at construction.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from medcompute.server.jobs.states import Job, State

__all__ = ["DeliveryState", "JobView", "JobUpdate", "JobPage", "DeliveryView", "StoredResult",
           "ResultInfo", "JobCodec", "AuditEntry", "JobAudit", "job_view"]


class DeliveryState(str, enum.Enum):
    NONE = "NONE"                # the result stays with its subscriber
    PENDING = "PENDING"          # not ended yet
    DELIVERED = "DELIVERED"      # in the recipient's inbox
    FETCHED = "FETCHED"          # the recipient fetched it
    FAILED = "FAILED"            # ended without a result to deliver


@dataclass(frozen=True)
class JobView:
    """A job as its subscriber sees it."""

    job_id: str
    subscriber: str
    state: State
    operations: tuple[str, ...]
    destination: str             # empty: the subscriber itself
    delivery: DeliveryState
    label: str
    idempotency_key: str
    created_at: float
    queued_at: float
    started_at: float
    finished_at: float
    delivered_at: float
    fetched_at: float
    worker: str
    error: str
    error_code: str
    platform_fault: bool
    progress: float
    result_available: bool
    asynchronous: bool


@dataclass(frozen=True)
class JobUpdate:
    """One step of a watched job: its view and what it is doing, in words."""

    job: JobView
    message: str


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobView]
    next_page_token: str


@dataclass(frozen=True)
class DeliveryView:
    """A result delivered to a recipient's inbox (``result_header``: as stored)."""

    seq: int
    job_id: str
    sender: str
    operations: tuple[str, ...]
    label: str
    delivered_at: float
    fetched_at: float
    result_header: bytes


@dataclass(frozen=True)
class ResultInfo:
    """What sending a stored result needs of its description."""

    compression: int             # the wire compression of its chunks
    itemsize: int                # the shuffle unit (1 for DICOM files)
    file_sizes: tuple[int, ...]  # the DICOM files in it (empty: an array)


@dataclass(frozen=True)
class StoredResult:
    """A job's result ready to be sent: its description (as stored) and its file."""

    header: bytes
    path: str
    compression: int
    itemsize: int
    file_sizes: tuple[int, ...]
    recipient: bool              # fetched by the recipient of a delivery


class AuditEntry(Protocol):
    def write(self, db) -> None: ...

    def committed(self) -> None: ...


class JobCodec(Protocol):
    """The wire formats of the API layer, lent to the runner (api/jobs.py has the one)."""

    def process_header(self, stored: bytes) -> Any:
        """The processing request (a ProcessRequest) of a stored submit."""

    def result_header(self, outcome, stored: bytes) -> bytes:
        """The stored description of the result of a job (``stored``: its request)."""

    def result_info(self, header: bytes) -> ResultInfo:
        """What sending a stored result needs of its description."""


#: The audit entry of a call's job, written with its QUEUED row (None: no call runs it).
JobAudit = Callable[[Job], AuditEntry | None]


def delivery_state(job: Job, delivery: dict | None) -> DeliveryState:
    if not job.delivered:
        return DeliveryState.NONE
    if delivery is not None:
        return DeliveryState.FETCHED if delivery["fetched_at"] else DeliveryState.DELIVERED
    return DeliveryState.FAILED if job.state.terminal else DeliveryState.PENDING


def job_view(job: Job, request: dict | None, delivery: dict | None = None,
             progress: float = 0.0) -> JobView:
    """The view of a job (``request``: its stored asynchronous request, ``delivery``: its
    row in the recipient's inbox)."""
    delivered = delivery is not None
    request = request or {}
    available = (job.state is State.SUCCEEDED and bool(request.get("result_path"))
                 and not request.get("result_removed_at"))
    return JobView(
        job_id=job.id, subscriber=job.subscriber, state=job.state,
        operations=tuple(job.operations),
        destination=job.destination if job.delivered else "",
        delivery=delivery_state(job, delivery), label=request.get("label") or "",
        idempotency_key=request.get("idempotency_key") or "",
        created_at=job.created_at, queued_at=job.queued_at or 0.0,
        started_at=job.started_at or 0.0, finished_at=job.finished_at or 0.0,
        delivered_at=delivery["delivered_at"] if delivered else 0.0,
        fetched_at=(delivery["fetched_at"] or 0.0) if delivered else 0.0,
        worker=job.worker, error=job.error, error_code=job.error_code,
        platform_fault=job.platform_fault,
        progress=1.0 if job.state is State.SUCCEEDED else progress,
        result_available=available, asynchronous=bool(request))
