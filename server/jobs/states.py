"""The job life-cycle as a small, I/O-free state machine.

Events go in, a new immutable :class:`Job` comes out; the caller (the service)
applies the side effects (persisting, metering). Nothing here touches a disk,
a clock or the network, so every transition is unit-tested alone.

    RECEIVING ──▶ QUEUED ──▶ RUNNING ──▶ SUCCEEDED
        │            │          │  └───▶ FAILED
        └────────────┴──────────┴──────▶ FAILED | CANCELLED
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass

__all__ = ["State", "Job", "InvalidTransition", "new_job", "apply", "Event",
           "InputsReceived", "Started", "Succeeded", "Failed", "Cancelled"]


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


@dataclass(frozen=True)
class InputsReceived:
    at: float


@dataclass(frozen=True)
class Started:
    at: float
    worker: str


@dataclass(frozen=True)
class Succeeded:
    at: float


@dataclass(frozen=True)
class Failed:
    at: float
    reason: str
    code: str
    platform_fault: bool = False


@dataclass(frozen=True)
class Cancelled:
    at: float
    reason: str


Event = InputsReceived | Started | Succeeded | Failed | Cancelled


class InvalidTransition(RuntimeError):
    """An event that the job's current state does not accept (a bug in the caller)."""


_ACCEPTS: dict[State, tuple[type, ...]] = {
    State.RECEIVING: (InputsReceived, Failed, Cancelled),
    State.QUEUED: (Started, Failed, Cancelled),
    State.RUNNING: (Succeeded, Failed, Cancelled),
    State.SUCCEEDED: (),
    State.FAILED: (),
    State.CANCELLED: (),
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


def apply(job: Job, event: Event) -> Job:
    """The job after ``event``; :class:`InvalidTransition` if its state does not accept it."""
    if not isinstance(event, _ACCEPTS[job.state]):
        raise InvalidTransition(f"job {job.id}: {type(event).__name__} in state {job.state.value}")
    replace = dataclasses.replace
    if isinstance(event, InputsReceived):
        return replace(job, state=State.QUEUED, queued_at=event.at)
    if isinstance(event, Started):
        return replace(job, state=State.RUNNING, started_at=event.at, worker=event.worker)
    if isinstance(event, Succeeded):
        return replace(job, state=State.SUCCEEDED, finished_at=event.at)
    if isinstance(event, Failed):
        return replace(job, state=State.FAILED, finished_at=event.at, error=event.reason,
                       error_code=event.code, platform_fault=event.platform_fault)
    return replace(job, state=State.CANCELLED, finished_at=event.at, error=event.reason,
                   error_code="CANCELLED")
