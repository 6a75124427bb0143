"""The job life-cycle as a small, I/O-free state machine: events in, instructions out.

:func:`handle` takes a job and an event and returns the job after it and the
:class:`Instruction` s that the event asks for (persist the job, launch its run, record
its end, remove its files, wake its watchers ...). Nothing here touches a disk, a clock or
the network: the asynchronous layer of jobs/ (runner.py, leases.py, effects.py) applies
the instructions, in order, so every transition is unit-tested alone (as distributed's
``worker_state_machine.py`` does for its tasks).

    RECEIVING ──▶ QUEUED ──▶ RUNNING ──▶ SUCCEEDED
        │            │          │  └───▶ FAILED
        └────────────┴──────────┴──────▶ FAILED | CANCELLED

A failure is classified (:class:`Fault`): the caller's mistake, the infrastructure's (not
billed), a cancellation, or a passed deadline. :func:`failure` turns the exception a job
ended with into its :class:`Failure`, for every way a job runs (a synchronous call's,
a batch image's and an asynchronous job's end alike). A job whose server stopped is taken over
(:class:`TakenOver`): run again from its stored inputs, or failed with the reason when
they never fully arrived. :func:`apply` is the same machine for callers that only need
the new job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import uuid
from dataclasses import dataclass

from medcompute.server.errors import MedcomputeError
from medcompute.server.storage.space import storage_fault

__all__ = [
    "State", "Job", "InvalidTransition", "new_job", "apply", "handle", "Event",
    "Admitted", "InputsReceived", "Started", "Succeeded", "AnsweredFromStore", "EndRecorded",
    "Failure", "failure",
    "CancelRequested", "TakenOver", "ResultExpired", "Fault", "classify", "MAX_ATTEMPTS",
    "Instruction", "Persist", "Launch", "RecordEnd", "RemoveFiles", "Notify",
    "NotifyRecipient", "CancelRun", "MarkResultRemoved",
]

#: A job interrupted this many times (its server stopped while it ran) is failed, not run
#: again: a job that brings its server down must not do so forever.
MAX_ATTEMPTS = 3


class State(str, enum.Enum):
    RECEIVING = "RECEIVING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED)


@dataclass(frozen=True)
class Job:
    id: str
    subscriber: str
    operations: tuple[str, ...]
    inputs: tuple[str, ...]          # references: "inline:<bytes>" for streamed images
    destination: str                 # who receives the result
    device: str                      # requested: auto | gpu | cpu
    state: State
    created_at: float
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker: str = ""
    error: str = ""                  # the reason, for FAILED and CANCELLED
    error_code: str = ""             # the status code name of the failure
    platform_fault: bool = False     # failed through the service's fault, not the caller's

    @property
    def delivered(self) -> bool:
        """Whether the result goes to another subscriber's inbox."""
        return self.destination != self.subscriber


# -- failures ------------------------------------------------------------------------
class Fault(str, enum.Enum):
    """Whose fault a job's end is."""

    CALLER = "caller"                    # the request was wrong: FAILED, billed
    INFRASTRUCTURE = "infrastructure"    # the platform failed: FAILED, platform_fault
    CANCELLED = "cancelled"              # the caller (or a stopping upload) gave up: CANCELLED
    DEADLINE = "deadline"                # the call's deadline passed: FAILED, DEADLINE_EXCEEDED


_PLATFORM_CODES = ("INTERNAL", "UNAVAILABLE")


def classify(code: str, *, platform_fault: bool = False) -> Fault:
    """The fault of an error by its status code name (``platform_fault``: the error says
    the platform failed, e.g. a full disk)."""
    if code == "DEADLINE_EXCEEDED":
        return Fault.DEADLINE
    if platform_fault or code in _PLATFORM_CODES:
        return Fault.INFRASTRUCTURE
    return Fault.CALLER


# -- events --------------------------------------------------------------------------
@dataclass(frozen=True)
class Admitted:
    """A new job's header was accepted: it is stored before its inputs arrive."""

    at: float


@dataclass(frozen=True)
class InputsReceived:
    """Every input is on disk (or in memory): the job waits for a worker."""

    at: float
    bytes_in: int = 0


@dataclass(frozen=True)
class Started:
    """The job was launched on a worker (``worker`` empty while it is not known)."""

    at: float
    worker: str


@dataclass(frozen=True)
class Succeeded:
    """The run finished well."""

    at: float


@dataclass(frozen=True)
class AnsweredFromStore:
    """The store holds this very result already (stored inputs, ``store_result``): the
    job succeeds without running, queued and started ``at`` if it was not yet."""

    at: float
    finished_at: float


@dataclass(frozen=True)
class EndRecorded:
    """The job's end was recorded by its run (the processing pipeline records a success
    with its usage and result in one transaction) or by another server: what follows
    an end remains to be done here."""

    at: float


@dataclass(frozen=True)
class Failure:
    """The job ended with an error of ``fault``: it becomes FAILED or CANCELLED."""

    at: float
    fault: Fault
    reason: str
    code: str = ""
    images: int = 0          # for the usage record of its end
    bytes_in: int = 0


def failure(exc: BaseException, *, at: float, reason: str, images: int = 0,
            bytes_in: int = 0) -> Failure:
    """The event of a job that ended with ``exc`` (``reason``: why it was cancelled, for a
    cancellation). A full or failing disk is the platform's fault (not billed); an error
    that is not the domain's is an internal one."""
    exc = storage_fault(exc) or exc
    if isinstance(exc, asyncio.CancelledError):
        return Failure(at, Fault.CANCELLED, reason, images=images, bytes_in=bytes_in)
    if isinstance(exc, MedcomputeError):
        fault = classify(exc.code_name, platform_fault=getattr(exc, "platform_fault", False))
        return Failure(at, fault, exc.details, exc.code_name, images=images, bytes_in=bytes_in)
    return Failure(at, Fault.INFRASTRUCTURE, f"internal error ({type(exc).__name__})",
                   "INTERNAL", images=images, bytes_in=bytes_in)


@dataclass(frozen=True)
class CancelRequested:
    """A subscriber asked for the job's cancellation (any server may run it)."""

    at: float
    reason: str = "cancelled by the subscriber"


@dataclass(frozen=True)
class TakenOver:
    """This server took over a job whose lease ran out (its server stopped).

    ``attempts``: the take-overs so far, this one included; ``asynchronous``: the job has
    a stored request (a synchronous call's job cannot be run again); ``bytes_in`` and
    ``images`` are for the usage record of a job failed here."""

    at: float
    attempts: int
    asynchronous: bool = True
    bytes_in: int = 0
    images: int = 0


@dataclass(frozen=True)
class ResultExpired:
    """The job ended longer ago than the result retention: its files go."""

    at: float


Event = (Admitted | InputsReceived | Started | Succeeded | AnsweredFromStore | EndRecorded
         | Failure | CancelRequested | TakenOver | ResultExpired)


# -- instructions --------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    """What the asynchronous layer does after an event, in the order given."""


@dataclass(frozen=True)
class Persist(Instruction):
    """Write the job (not ended). ``bytes_in`` set: its inputs arrived (the QUEUED row,
    with the call's audit entry). When the job had ended meanwhile (another server), the
    instructions after this one are dropped."""

    job: Job
    bytes_in: int | None = None


@dataclass(frozen=True)
class Launch(Instruction):
    """Run the job (from its stored inputs) when a slot is free."""

    job_id: str


@dataclass(frozen=True)
class RecordEnd(Instruction):
    """Record the job's end (``outcome``: its final state) and its one usage record, in
    one transaction; nothing when it had ended already."""

    job: Job
    outcome: State
    images: int = 0
    bytes_in: int = 0


@dataclass(frozen=True)
class RemoveFiles(Instruction):
    """Remove the job's inputs, its partial result, or its whole folder."""

    job_id: str
    inputs: bool = False
    result: bool = False
    folder: bool = False


@dataclass(frozen=True)
class Notify(Instruction):
    """Wake the watchers of jobs (something changed)."""


@dataclass(frozen=True)
class NotifyRecipient(Instruction):
    """Wake the inbox watchers: a job for another subscriber ended."""

    job_id: str


@dataclass(frozen=True)
class CancelRun(Instruction):
    """Record the cancellation request and stop the job's run, wherever it runs: this
    server cancels its task; a job no server holds is ended here."""

    job_id: str
    reason: str


@dataclass(frozen=True)
class MarkResultRemoved(Instruction):
    job_id: str


class InvalidTransition(RuntimeError):
    """An event that the job's current state does not accept (a bug in the caller)."""


_LIVE = (State.RECEIVING, State.QUEUED, State.RUNNING)
_ENDED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
_ACCEPTS: dict[type, tuple[State, ...]] = {
    Admitted: (State.RECEIVING,),
    InputsReceived: (State.RECEIVING,),
    Started: (State.QUEUED,),
    Succeeded: (State.RUNNING,),
    AnsweredFromStore: _LIVE,
    EndRecorded: _ENDED,
    Failure: _LIVE,
    CancelRequested: (*_LIVE, *_ENDED),
    TakenOver: _LIVE,
    ResultExpired: _ENDED,
}


def new_job(*, subscriber: str, operations, inputs, device: str, created_at: float,
            destination: str | None = None, job_id: str | None = None) -> Job:
    """A job in state RECEIVING: its header arrived, its inputs are on the way."""
    return Job(
        id=job_id or uuid.uuid4().hex,
        subscriber=subscriber,
        operations=tuple(operations),
        inputs=tuple(inputs),
        destination=destination or subscriber,
        device=device,
        state=State.RECEIVING,
        created_at=created_at,
    )


def _end(job: Job, fault: Fault, at: float, reason: str, code: str) -> Job:
    replace = dataclasses.replace
    if fault is Fault.CANCELLED:
        return replace(job, state=State.CANCELLED, finished_at=at, error=reason,
                       error_code="CANCELLED")
    if fault is Fault.DEADLINE:
        code = "DEADLINE_EXCEEDED"
    elif fault is Fault.INFRASTRUCTURE:
        code = code or "INTERNAL"
    return replace(job, state=State.FAILED, finished_at=at, error=reason, error_code=code,
                   platform_fault=fault is Fault.INFRASTRUCTURE)


def _ended(job: Job, *, images: int = 0, bytes_in: int = 0,
           record: bool = True) -> list[Instruction]:
    """What follows every end: record it, drop the files it no longer needs, tell."""
    out: list[Instruction] = []
    if record:
        out.append(RecordEnd(job, job.state, images, bytes_in))
    if job.queued_at is None:
        out.append(RemoveFiles(job.id, folder=True))        # never accepted: nothing kept
    else:
        out.append(RemoveFiles(job.id, inputs=True, result=job.state is not State.SUCCEEDED))
    out.append(Notify())
    if job.delivered:
        out.append(NotifyRecipient(job.id))
    return out


def handle(job: Job, event: Event) -> tuple[Job, list[Instruction]]:
    """The job after ``event`` and what is to be done; :class:`InvalidTransition` when
    its state does not accept the event."""
    accepts = _ACCEPTS.get(type(event))
    if accepts is None or job.state not in accepts:
        raise InvalidTransition(f"job {job.id}: {type(event).__name__} in state {job.state.value}")
    replace = dataclasses.replace
    if isinstance(event, Admitted):
        if job.queued_at is not None:
            raise InvalidTransition(f"job {job.id}: admitted twice")
        return job, [Persist(job)]
    if isinstance(event, InputsReceived):
        job = replace(job, state=State.QUEUED, queued_at=event.at)
        return job, [Persist(job, bytes_in=event.bytes_in), Launch(job.id), Notify()]
    if isinstance(event, Started):
        job = replace(job, state=State.RUNNING, started_at=event.at, worker=event.worker)
        return job, [Persist(job), Notify()]
    if isinstance(event, Succeeded):
        job = replace(job, state=State.SUCCEEDED, finished_at=event.at)
        return job, _ended(job)
    if isinstance(event, AnsweredFromStore):
        if job.state is not State.RUNNING:
            job = replace(job, queued_at=job.queued_at or event.at, started_at=event.at,
                          worker="")
        job = replace(job, state=State.SUCCEEDED, finished_at=event.finished_at)
        return job, _ended(job)
    if isinstance(event, EndRecorded):
        return job, _ended(job, record=False)
    if isinstance(event, Failure):
        job = _end(job, event.fault, event.at, event.reason, event.code)
        return job, _ended(job, images=event.images, bytes_in=event.bytes_in)
    if isinstance(event, CancelRequested):
        if job.state.terminal:
            return job, []                                   # ended already: nothing to stop
        return job, [CancelRun(job.id, event.reason), Notify()]
    if isinstance(event, TakenOver):
        return _taken_over(job, event)
    # ResultExpired
    return job, [RemoveFiles(job.id, folder=True), MarkResultRemoved(job.id)]


def _taken_over(job: Job, event: TakenOver) -> tuple[Job, list[Instruction]]:
    if not event.asynchronous:
        reason = "the server handling this call stopped before the job ended"
        bytes_in = 0
    elif job.state is State.RECEIVING:
        reason = ("the server stopped while receiving the inputs; submit again (the same "
                  "idempotency key may be used)")
        bytes_in = event.bytes_in
    elif event.attempts >= MAX_ATTEMPTS:
        # Its first run and every take-over so far were cut short by a stopping server.
        reason = (f"the job was interrupted {MAX_ATTEMPTS} times by its server stopping; "
                  "not run again")
        bytes_in = event.bytes_in
    else:
        return job, [Launch(job.id)]                        # run again from stored inputs
    job = _end(job, Fault.INFRASTRUCTURE, event.at, reason, "UNAVAILABLE")
    return job, _ended(job, images=event.images, bytes_in=bytes_in)


def apply(job: Job, event: Event) -> Job:
    """The job after ``event``; :class:`InvalidTransition` if its state does not accept it."""
    return handle(job, event)[0]
