"""Who may call the DICOM port: the one place that decides.

An association is accepted when it calls this node by its own AE title (or an alias the
operator added with ``--dicom-ae-alias``; any other: rejected, "called AE title not
recognised"), and its calling AE title, at the address it calls from, is one of

- a **calling AE an administrator registered** (``medcompute dicom ae add``) for a
  subscriber, from its registered host or network: it may do all the port offers
  (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) as that subscriber;
- a **source with a retrieve of ours in flight**: while a C-MOVE this server sent to a
  source is unanswered, that source's AE title from that source's host may open
  associations to send the retrieve's instances back (the C-STORE sub-operations come
  on an association of the source's own); it may only C-STORE, and each instance is the
  collecting subscriber's. Where the C-STORE names its move originator (our AE title
  and the C-MOVE's message ID, as PS3.7 9.3.1.1 asks), that picks the retrieve;
- a **node with a storage commitment in flight** (see :mod:`.commit`), from that node's
  host, only to send its N-EVENT-REPORT.

Anything else is rejected ("calling AE title not recognised"). A source is something
this server calls out to: registering one opens no door by itself; a scanner or a PACS
that pushes to this server is a calling AE, registered by an administrator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from medcompute.server.dicomnet.registry import CallingAE, check_caller_host, host_matches
from medcompute.server.errors import InvalidArgument

__all__ = ["Access", "Caller", "Refused", "Retrieval", "Retrievals", "CALLING_NOT_RECOGNISED",
           "CALLED_NOT_RECOGNISED", "unusable"]

#: A-ASSOCIATE-RJ reasons (result permanent, source service user, PS3.8 9.3.4).
CALLING_NOT_RECOGNISED = 0x03
CALLED_NOT_RECOGNISED = 0x07


def unusable(aes) -> list[CallingAE]:
    """The registered calling AEs whose host matches no caller: rows earlier versions
    wrote (a source's AE title registered as a calling AE, with host ``*``, for one)."""
    out = []
    for ae in aes:
        try:
            check_caller_host(ae.host, "host")
        except InvalidArgument:
            out.append(ae)
    return out


@dataclass(frozen=True)
class Retrieval:
    """A C-MOVE of ours in flight: from the source ``ae_title`` at ``host``, for
    ``subscriber``, sent with ``message_id``."""

    subscriber: str
    ae_title: str
    host: str
    message_id: int


class Retrievals:
    """The C-MOVEs in flight (thread-safe: the collector's threads open them, the
    association threads read them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flight: dict[int, Retrieval] = {}
        self._next = 0

    @contextmanager
    def expect(self, subscriber: str, ae_title: str, host: str) -> Iterator[int]:
        """While the block runs, ``ae_title`` from ``host`` may send back the instances
        of a retrieve for ``subscriber``; yields the message ID to send the C-MOVE with."""
        with self._lock:
            for _ in range(0xFFFF):
                self._next = self._next % 0xFFFF + 1
                if self._next not in self._flight:
                    break
            else:
                raise RuntimeError("65535 retrieves in flight")
            message_id = self._next
            self._flight[message_id] = Retrieval(subscriber, ae_title, host, message_id)
        try:
            yield message_id
        finally:
            with self._lock:
                self._flight.pop(message_id, None)

    def of(self, ae_title: str, address: str) -> list[Retrieval]:
        """The retrieves in flight from ``ae_title`` whose source's host is ``address``."""
        with self._lock:
            flight = [r for r in self._flight.values() if r.ae_title == ae_title]
        return [r for r in flight if host_matches(r.host, address)]


@dataclass(frozen=True)
class Caller:
    """An accepted association's peer: ``registered`` (None for a source returning a
    retrieve, or a node reporting a commitment) is what an administrator registered."""

    ae_title: str
    address: str
    registered: CallingAE | None = None

    @property
    def subscriber(self) -> str | None:
        """The subscriber whose images it may query and retrieve (None: none)."""
        return self.registered.subscriber if self.registered is not None else None


@dataclass(frozen=True)
class Refused:
    """An association not accepted: the A-ASSOCIATE-RJ reason and why (for the log)."""

    diagnostic: int
    why: str


class Access:
    """Decides which associations the storage SCP accepts and whose a C-STORE is."""

    def __init__(self, registry, *, own_ae: str, aliases=(), retrievals: Retrievals,
                 commitments=None):
        self.registry = registry            # NodeRegistry: the registered calling AEs
        self.called = frozenset([own_ae, *aliases])
        self.own_ae = own_ae
        self.retrievals = retrievals
        self.commitments = commitments      # Commitments: reports of pushes in flight

    def admit(self, calling: str, called: str, address: str) -> Caller | Refused:
        """The caller of an association asked for by ``calling`` at ``address`` to
        ``called``, or why it is refused."""
        calling, called = calling.strip(), called.strip()
        if called not in self.called:
            return Refused(CALLED_NOT_RECOGNISED, f"called AE title {called!r} is not this "
                           "node's")
        known = self.registry.calling_ae(calling) if calling else None
        if known is not None and host_matches(known.host, address):
            return Caller(calling, address, known)
        if calling and self.retrievals.of(calling, address):
            return Caller(calling, address)
        if calling and self.commitments is not None and any(
                host_matches(host, address) for host in self.commitments.callers(calling)):
            return Caller(calling, address)
        return Refused(CALLING_NOT_RECOGNISED, "AE title not registered" if known is None
                       else "not its registered host")

    def store_owner(self, caller: Caller, originator_ae: str | None,
                    originator_id: int | None) -> str | None:
        """The subscriber an instance sent by ``caller`` belongs to (None: refused): that
        of the retrieve its move originator names, else the registered caller's, else
        that of the one subscriber with a retrieve in flight from it."""
        flight = self.retrievals.of(caller.ae_title, caller.address)
        if originator_id and (originator_ae or "").strip() in self.called:
            for r in flight:
                if r.message_id == originator_id:
                    return r.subscriber
        if caller.registered is not None:
            return caller.registered.subscriber
        subscribers = {r.subscriber for r in flight}
        return subscribers.pop() if len(subscribers) == 1 else None
