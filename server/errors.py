"""Domain errors, raised by domain code and mapped to gRPC status codes in one place.

Each error carries the request *field* it is about (a dotted path such as
``header.pipeline[1].gaussian.sigma_mm``) and a message a person can act on. Below the
API layer the path is relative to the request the code was given (``pipeline[1]...``);
whoever holds that request in a larger one names the field there with :func:`within`
(:func:`renamed`, :func:`named`): the API layer, once, in its wire message.
The message never contains patient names or ids.

The classes pickle cleanly, so a worker process can raise them and the server
receives the same class back from Dask.
"""

from __future__ import annotations

import contextlib

__all__ = [
    "within",
    "renamed",
    "named",
    "Moves",
    "MedcomputeError",
    "InvalidArgument",
    "NotFound",
    "FailedPrecondition",
    "AlreadyExists",
    "Aborted",
    "ResourceExhausted",
    "StorageFull",
    "Unauthenticated",
    "PermissionDenied",
    "Cancelled",
    "DeadlineExceeded",
    "Unavailable",
    "StorageFailure",
    "Internal",
    "shown_id",
    "SHOWN_ID_CHARS",
]

#: Characters of an id an error message repeats; a longer one is cut, with "…".
SHOWN_ID_CHARS = 64


def shown_id(value: str) -> str:
    """``value`` quoted for a message, cut to :data:`SHOWN_ID_CHARS` characters: an error
    never carries a caller's long id back whole.

    >>> shown_id("ab12"), shown_id("f" * 70)[-4:]
    ("'ab12'", "ff'…")
    """
    text = value if len(value) <= SHOWN_ID_CHARS else value[:SHOWN_ID_CHARS]
    return repr(text) + ("…" if len(value) > SHOWN_ID_CHARS else "")


class MedcomputeError(Exception):
    """Base of every error the service reports to a caller.

    Parameters
    ----------
    message : str
        What went wrong and what was expected.
    field : str, optional
        The request field the error is about; prefixed to the message.
    """

    code_name = "INTERNAL"

    def __init__(self, message: str, field: str | None = None):
        self.message = message
        self.field = field
        super().__init__(self.details)

    @property
    def details(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def __reduce__(self):
        return (type(self), (self.message, self.field))


class InvalidArgument(MedcomputeError):
    """The caller sent something malformed or inconsistent."""

    code_name = "INVALID_ARGUMENT"


class NotFound(MedcomputeError):
    """An id that does not exist (or belongs to another subscriber)."""

    code_name = "NOT_FOUND"


class FailedPrecondition(MedcomputeError):
    """The request is valid but the system is not in a state to run it."""

    code_name = "FAILED_PRECONDITION"


class AlreadyExists(MedcomputeError):
    """The caller asked to create something that exists in another form (an idempotency
    key reused for a different request)."""

    code_name = "ALREADY_EXISTS"


class Aborted(MedcomputeError):
    """A concurrent call on the same object won; retrying may succeed."""

    code_name = "ABORTED"


class ResourceExhausted(MedcomputeError):
    """Over a configured limit."""

    code_name = "RESOURCE_EXHAUSTED"


class StorageFull(ResourceExhausted):
    """The data directory's disk is full, or below its free-space reserve. Not the caller's
    fault: a job that ends with it is not billed."""

    platform_fault = True


class Unauthenticated(MedcomputeError):
    code_name = "UNAUTHENTICATED"


class PermissionDenied(MedcomputeError):
    code_name = "PERMISSION_DENIED"


class Cancelled(MedcomputeError):
    code_name = "CANCELLED"


class DeadlineExceeded(MedcomputeError):
    code_name = "DEADLINE_EXCEEDED"


class Unavailable(MedcomputeError):
    """The cluster or a dependency cannot be reached right now; retrying may help."""

    code_name = "UNAVAILABLE"


class StorageFailure(Unavailable):
    """The data directory's disk failed (an I/O error); retrying later may succeed."""

    platform_fault = True


class Internal(MedcomputeError):
    """A fault of the service, not of the caller."""

    code_name = "INTERNAL"


Moves = tuple[tuple[str, str], ...]


def within(field: str | None, parent: str = "", moves: Moves = ()) -> str | None:
    """``field``, relative to a request, as a field of the request that holds that one at
    ``parent``; a field under the first path of one of ``moves`` goes under its second
    instead (a batch's ``input`` is its ``inputs[i]``).

    A field that names a place in the request stream (``request[3]...``) is absolute and
    kept; the ``header.`` some lower rooms start theirs with is the request's root.

    >>> within("pipeline[0].gaussian", "header.process")
    'header.process.pipeline[0].gaussian'
    >>> within("input.size", moves=(("input", "inputs[2]"),))
    'inputs[2].size'
    """
    if not field or field.startswith("request["):
        return field
    rel = field.removeprefix("header.")
    for old, new in moves:
        if rel == old or rel.startswith((old + ".", old + "[")):
            return new + rel[len(old):]
    return f"{parent}.{rel}" if parent else rel


def renamed(exc: BaseException, parent: str = "", moves: Moves = ()) -> BaseException:
    """``exc`` with its field named by :func:`within` (other exceptions unchanged)."""
    if isinstance(exc, MedcomputeError) and exc.field:
        exc.field = within(exc.field, parent, moves)
        exc.args = (exc.details,)
    return exc


@contextlib.contextmanager
def named(parent: str = "", moves: Moves = ()):
    """Errors raised inside are :func:`renamed`."""
    try:
        yield
    except MedcomputeError as exc:
        renamed(exc, parent, moves)
        raise
