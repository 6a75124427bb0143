"""Collect from a sender's PACS: C-FIND at series level, then C-MOVE or C-GET.

A sending subscriber registers its PACS as a source: something this server calls out
to, which opens no door into it. A C-MOVE is answered by the PACS opening an association
to this server's storage SCP; while the C-MOVE is in flight, that association (the
source's AE title, from the source's host) is accepted to send its instances back, and
nothing else (see :mod:`.access`). C-GET brings the instances back on the query
association; they go through the same ingress (stored
durably before each success status). Either way the series then complete and are
routed as any received series. A series collected once (every instance retrieved with
success) is remembered per subscriber and source and not fetched again. A source may be
reached over DICOM TLS (see :mod:`.tls`). A source registered with a capacity URL is
collected on its schedule only when its free capacity runs low, oldest studies first
(see :mod:`.offload`). Each front end sharing the catalog polls the schedules; the one
that records a due run first (a compare-and-set of the source's ``last_run``) collects
it, so a schedule runs once per period, not once per host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from medcompute.server.dicom.meta import normalise_date
from medcompute.server.dicomnet.access import Retrievals
from medcompute.server.dicomnet.association import associate, reach
from medcompute.server.dicomnet.offload import (
    Offload,
    check_offload,
    describe,
    oldest_first,
    read_capacity,
    study_size,
    threshold_bytes,
)
from medcompute.server.dicomnet.registry import calling_ae, check_address, check_ae_title
from medcompute.server.dicomnet.tls import Tls, check_tls, dumps, loads
from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    MedcomputeError,
    NotFound,
    Unavailable,
    shown_id,
)
from medcompute.server.storage.db import Store, add_columns, table
from medcompute.server.storage.keys import check_subscriber

__all__ = ["SourceBook", "Source", "Collector", "Collected", "Query", "capacity_checked",
           "collected", "delete_source", "keep_source", "mark", "put_source", "ran",
           "scheduled", "sources"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dicom_source (
    subscriber TEXT NOT NULL,
    name       TEXT NOT NULL,
    ae_title   TEXT NOT NULL,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    method     TEXT NOT NULL,
    created_at REAL NOT NULL,
    every      INTEGER NOT NULL DEFAULT 0,
    days       INTEGER NOT NULL DEFAULT 0,
    modality   TEXT NOT NULL DEFAULT '',
    last_run   REAL NOT NULL DEFAULT 0,
    tls        TEXT NOT NULL DEFAULT '',
    capacity_url TEXT NOT NULL DEFAULT '',
    below_percent REAL NOT NULL DEFAULT 0,
    below_mib  INTEGER NOT NULL DEFAULT 0,
    capacity_state TEXT NOT NULL DEFAULT '',
    capacity_at REAL NOT NULL DEFAULT 0,
    max_mib    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subscriber, name)
);
CREATE TABLE IF NOT EXISTS dicom_collected (
    subscriber   TEXT NOT NULL,
    source       TEXT NOT NULL,             -- the PACS: AE@host:port
    series_uid   TEXT NOT NULL,
    collected_at REAL NOT NULL,
    PRIMARY KEY (subscriber, source, series_uid)
);
"""

METHODS = ("move", "get")
#: What collecting proposes, as SCU: the study root C-FIND, C-MOVE and C-GET models, and
#: for a C-GET the SCP role of pynetdicom's storage SOP classes (at most 127 of them:
#: with the C-GET model, 128 presentation contexts fill an association).
QUERY_MODELS = (StudyRootQueryRetrieveInformationModelFind,
                StudyRootQueryRetrieveInformationModelMove,
                StudyRootQueryRetrieveInformationModelGet)
GET_STORAGE_CONTEXTS = tuple(StoragePresentationContexts[:127])


@dataclass(frozen=True)
class Source:
    subscriber: str
    name: str
    ae_title: str
    host: str
    port: int
    method: str
    created_at: float
    every: int = 0
    days: int = 0
    modality: str = ""
    last_run: float = 0.0
    tls: Tls | None = None
    capacity_url: str = ""
    below_percent: float = 0.0
    below_mib: int = 0
    capacity_state: str = ""
    capacity_at: float = 0.0
    max_mib: int = 0

    @property
    def offload(self) -> Offload:
        return Offload(self.capacity_url, self.below_percent, self.below_mib, self.max_mib)

    @property
    def pacs(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


_SOURCE = ("subscriber, name, ae_title, host, port, method, created_at, every, days, modality, "
           "last_run, tls, capacity_url, below_percent, below_mib, capacity_state, capacity_at, "
           "max_mib")
#: Columns added since the first catalogs (the migration adds them).
_ADDED = (("tls", "TEXT NOT NULL DEFAULT ''"), ("capacity_url", "TEXT NOT NULL DEFAULT ''"),
          ("below_percent", "REAL NOT NULL DEFAULT 0"),
          ("below_mib", "INTEGER NOT NULL DEFAULT 0"),
          ("capacity_state", "TEXT NOT NULL DEFAULT ''"),
          ("capacity_at", "REAL NOT NULL DEFAULT 0"),
          ("max_mib", "INTEGER NOT NULL DEFAULT 0"))


def _source(row) -> Source:
    return Source(*row[:11], loads(row[11]), *row[12:])


@dataclass(frozen=True)
class Query:
    modality: str = ""
    date_from: str = ""
    date_to: str = ""
    study_uid: str = ""
    patient_id: str = ""


@dataclass
class Collected:
    found: int = 0
    skipped: int = 0
    retrieved: int = 0
    instances: int = 0
    failures: list[str] | None = None


@table
def create(tx) -> None:
    """The sources table; a catalog written before DICOM TLS and storage offload gets
    their columns."""
    tx.executescript(_SCHEMA)
    add_columns(tx, "dicom_source", dict(_ADDED))


_UPSERT = (
    f"INSERT INTO dicom_source ({_SOURCE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, "
    "?, ?, ?, '', 0, ?) "
    "ON CONFLICT(subscriber, name) DO UPDATE SET ae_title = excluded.ae_title, "
    "host = excluded.host, port = excluded.port, method = excluded.method, "
    "every = excluded.every, days = excluded.days, modality = excluded.modality, "
    "tls = excluded.tls, capacity_url = excluded.capacity_url, "
    "below_percent = excluded.below_percent, below_mib = excluded.below_mib, "
    "max_mib = excluded.max_mib, capacity_state = '', capacity_at = 0")


def put_source(tx, src: Source) -> None:
    """Keep a checked source (a new one, or new settings of one of that name)."""
    tx.execute(_UPSERT, (src.subscriber, src.name, src.ae_title, src.host, src.port,
                         src.method, src.created_at, src.every, src.days, src.modality,
                         dumps(src.tls), src.capacity_url, src.below_percent, src.below_mib,
                         src.max_mib))


def keep_source(tx, src: Source) -> None:
    """Keep a checked source unless its AE title is a calling AE of another subscriber
    (then InvalidArgument, and nothing is written): to run in one transaction."""
    known = calling_ae(tx, src.ae_title)
    if known is not None and known.subscriber != src.subscriber:
        raise InvalidArgument(f"the AE title {src.ae_title!r} is registered for another "
                              "subscriber", "source.ae_title")
    put_source(tx, src)


def delete_source(tx, subscriber: str, name: str) -> bool:
    """False when there is no such source."""
    return bool(tx.execute("DELETE FROM dicom_source WHERE subscriber = ? AND name = ?",
                           (subscriber, name)).rowcount)


def capacity_checked(tx, subscriber: str, name: str, state: str, at: float) -> None:
    tx.execute("UPDATE dicom_source SET capacity_state = ?, capacity_at = ? WHERE "
               "subscriber = ? AND name = ?", (state, at, subscriber, name))


def sources(tx, subscriber: str) -> list[Source]:
    return [_source(r) for r in tx.execute(
        f"SELECT {_SOURCE} FROM dicom_source WHERE subscriber = ? ORDER BY name",
        (subscriber,))]


def scheduled(tx, now: float) -> list[Source]:
    """Sources whose schedule is due at ``now``."""
    return [_source(r) for r in tx.execute(
        f"SELECT {_SOURCE} FROM dicom_source WHERE every > 0 AND last_run + every <= ?",
        (now,))]


def ran(tx, subscriber: str, name: str, at: float, last_run: float | None = None) -> bool:
    """Record a run of the source's schedule at ``at``; with ``last_run`` (the run the
    caller found due), only if no front end has recorded one since: the claim of the
    period, so that front ends on several hosts sharing the catalog collect once per
    period. False: another front end claimed it first."""
    sql = "UPDATE dicom_source SET last_run = ? WHERE subscriber = ? AND name = ?"
    args: tuple = (at, subscriber, name)
    if last_run is not None:
        sql, args = sql + " AND last_run = ?", (*args, last_run)
    return bool(tx.execute(sql, args).rowcount)


def collected(tx, subscriber: str, source: str) -> set[str]:
    """The series UIDs already collected from ``source``."""
    return {r[0] for r in tx.execute(
        "SELECT series_uid FROM dicom_collected WHERE subscriber = ? AND source = ?",
        (subscriber, source))}


def mark(tx, subscriber: str, source: str, series_uid: str, at: float) -> None:
    tx.execute("INSERT INTO dicom_collected VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
               (subscriber, source, series_uid, at))


class SourceBook(Store):
    """The PACS sources and the series collected from them: a facade over this module's
    table functions, built on the server's shared Database or on a data directory (it
    then opens its own)."""

    TABLES = (create,)

    async def add(self, subscriber: str, name: str, ae_title: str, host: str, port: int,
                  method: str, every: int = 0, days: int = 0, modality: str = "",
                  tls: Tls | None = None, offload: Offload | None = None) -> Source:
        """Keep a source (a new one, or new settings of one of that name): every field
        checked first, then one transaction; a refused one leaves nothing behind."""
        check_subscriber(name, "source.name")
        title = check_ae_title(ae_title, "source.ae_title")
        check_address(host, port, "source", "the PACS's")
        if method not in METHODS:
            raise InvalidArgument(f"expected one of {', '.join(METHODS)}", "source.method")
        if len(modality) > 16 or "\\" in modality:
            raise InvalidArgument("expected a modality code such as CT", "source.schedule_modality")
        if tls is not None:
            tls = check_tls(tls, "source.tls")
        offload = check_offload(offload or Offload(), every)
        src = Source(subscriber, name, title, host, port, method, time.time(), every, days,
                     modality.strip(), 0.0, tls, offload.url, offload.below_percent,
                     offload.below_mib, max_mib=offload.max_mib)
        await asyncio.to_thread(self.db.transaction, keep_source, src)
        return src

    async def delete(self, subscriber: str, name: str) -> None:
        if not await self.db.read(delete_source, subscriber, name):
            raise NotFound(f"no source {shown_id(name)}", "name")

    async def capacity_checked(self, src: Source, state: str, at: float) -> None:
        await self.db.read(capacity_checked, src.subscriber, src.name, state, at)

    async def sources(self, subscriber: str) -> list[Source]:
        return await self.db.read(sources, subscriber)

    async def scheduled(self, now: float) -> list[Source]:
        """Sources whose schedule is due."""
        return await self.db.read(scheduled, now)

    async def ran(self, src: Source, at: float) -> bool:
        """Claim the due run of ``src`` (found with :meth:`scheduled`) at ``at``; False
        when another front end on the shared catalog claimed it first."""
        return await self.db.read(ran, src.subscriber, src.name, at, src.last_run)

    async def source(self, subscriber: str, name: str) -> Source:
        for s in await self.sources(subscriber):
            if s.name == name:
                return s
        raise NotFound(f"no source {shown_id(name)} (register it with "
                       "`medcompute dicom source add`)", "source")

    async def collected(self, subscriber: str, source: str) -> set[str]:
        return await self.db.read(collected, subscriber, source)

    async def mark(self, subscriber: str, source: str, series_uid: str) -> None:
        await self.db.read(mark, subscriber, source, series_uid, time.time())


def check_query(q: Query) -> Query:
    dates = {}
    for name in ("date_from", "date_to"):
        value = getattr(q, name)
        try:
            dates[name] = normalise_date(value) if value else ""
        except ValueError as exc:
            raise InvalidArgument(str(exc), name) from None
    for name in ("modality", "study_uid", "patient_id"):
        value = getattr(q, name)
        if len(value) > 64 or "\\" in value:
            raise InvalidArgument("expected at most 64 characters without a backslash",
                                  "study_instance_uid" if name == "study_uid" else name)
    return Query(q.modality.strip(), dates["date_from"], dates["date_to"], q.study_uid.strip(),
                 q.patient_id.strip())


def _identifier(q: Query) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = q.study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = q.modality
    ds.PatientID = q.patient_id
    ds.StudyDate = (f"{q.date_from}-{q.date_to}" if q.date_from or q.date_to else "")
    return ds


class Collector:
    """Runs collections for one server (its AE title and ingress)."""

    def __init__(self, book: SourceBook, ingress, retrievals: Retrievals, *, own_ae: str):
        self.book = book
        self.ingress = ingress
        #: The C-MOVEs in flight, whose sources may call in to send their instances.
        self.retrievals = retrievals
        self.own_ae = own_ae

    async def collect(self, subscriber: str, name: str, query: Query, method: str = ""
                      ) -> Collected:
        # The request's own fields first: a malformed one is refused whatever it names.
        query = check_query(query)
        if method and method not in METHODS:
            raise InvalidArgument(f"expected one of {', '.join(METHODS)}", "method")
        src = await self.book.source(subscriber, name)
        method = method or src.method
        found = await asyncio.to_thread(self._find, src, query)
        done = await self.book.collected(subscriber, src.pacs)
        out = Collected(found=len(found), failures=[])
        for study_uid, series_uid in found:
            if series_uid in done:
                out.skipped += 1
                continue
            retrieve = self._move if method == "move" else self._get
            ok, count, reason = await asyncio.to_thread(retrieve, src, study_uid, series_uid)
            out.instances += count
            if ok:
                out.retrieved += 1
                await self.book.mark(subscriber, src.pacs, series_uid)
                await self.ingress.released([(subscriber, series_uid)])
            else:
                out.failures.append(f"series {len(out.failures) + 1}: {reason}")
        log.info("dicom: collect from %s: %d series found, %d skipped, %d retrieved (%d "
                 "instances), %d failed", src.ae_title, out.found, out.skipped, out.retrieved,
                 out.instances, len(out.failures))
        return out

    # -- storage offload -------------------------------------------------------------
    async def offload(self, src: Source) -> str:
        """Check the source's capacity and, when its free capacity is below the threshold,
        collect its oldest studies (see :mod:`.offload`); the state it leaves."""
        try:
            state = await self._offload(src)
        except MedcomputeError as exc:
            state = f"the source could not be queried: {exc.message}; nothing collected"
        await self.book.capacity_checked(src, state, time.time())
        log.info("dicom: capacity of source %s: %s", src.ae_title, state)
        return state

    async def _offload(self, src: Source) -> str:
        o = src.offload
        cap = await asyncio.to_thread(read_capacity, o)
        if cap.why_unknown:
            return f"capacity not known: {cap.why_unknown}; nothing collected"
        threshold = threshold_bytes(o, cap.maximum)
        below = (f"{o.below_percent:g}%" if o.below_percent else describe(threshold))
        seen = f"free {describe(cap.free)} of {describe(cap.maximum)}"
        if cap.free >= threshold:
            return f"{seen}: not below {below}"
        studies = oldest_first(await asyncio.to_thread(self._find_studies, src))
        projected, fetched, before, failed = cap.free, 0, 0, 0
        for study_uid, _, _ in studies:
            if projected >= threshold:
                break
            size = await asyncio.to_thread(study_size, o, study_uid)
            out = await self.collect(src.subscriber, src.name, Query(study_uid=study_uid))
            if out.failures or size is None:
                failed += 1         # not safe to count as freed
                continue
            if out.retrieved:
                fetched += 1
            else:
                before += 1
            projected += size
        done = (f"{fetched} oldest stud{'y' if fetched == 1 else 'ies'} collected, "
                f"{before} collected before")
        if failed:
            done += f", {failed} not collected (see the log)"
        enough = "" if projected >= threshold else f"; still below {below}"
        return (f"{seen}: below {below}: {done}; free once they are removed: "
                f"{describe(projected)}{enough}")

    def _find_studies(self, src: Source) -> list[tuple[str, str, str]]:
        """(study UID, StudyDate, StudyTime) of every study of the source (C-FIND)."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = ""
        ds.StudyDate = ""
        ds.StudyTime = ""
        return self._query(src, ds, ("StudyInstanceUID", "StudyDate", "StudyTime"))

    # -- blocking DICOM exchanges (threads) -------------------------------------------
    def _associate(self, src: Source, ae: AE, **kw):
        refused = reach(src.host, src.port, src.tls, 30)
        if refused is not None:
            transient, reason = refused
            if transient:
                raise Unavailable(f"the source {src.name!r} is {reason}", "source")
            raise FailedPrecondition(f"the source {src.name!r}: {reason}", "source.tls")
        assoc, rejected = associate(ae, src.host, src.port, src.ae_title, src.tls, **kw)
        if not assoc.is_established:
            why = rejected[1] if rejected else "unreachable, or it aborted"
            raise Unavailable(f"the source {src.name!r} did not accept an association "
                              f"({why})", "source")
        return assoc

    def _find(self, src: Source, query: Query) -> list[tuple[str, str]]:
        """(study UID, series UID) of the series that match ``query`` (C-FIND)."""
        return self._query(src, _identifier(query), ("StudyInstanceUID", "SeriesInstanceUID"),
                           required="SeriesInstanceUID")

    def _query(self, src: Source, identifier: Dataset, keys: tuple[str, ...], *,
               required: str | None = None) -> list[tuple[str, ...]]:
        """The values of ``keys`` in each match of a study root C-FIND (a match without
        ``required``, default the first key, is left out)."""
        ae = AE(ae_title=self.own_ae)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = self._associate(src, ae)
        required = required or keys[0]
        found = []
        try:
            for status, match in assoc.send_c_find(
                    identifier, StudyRootQueryRetrieveInformationModelFind):
                if not status:
                    raise Unavailable("the source ended the query without an answer", "source")
                if status.Status in (0xFF00, 0xFF01) and match is not None:
                    if str(match.get(required, "")):
                        found.append(tuple(str(match.get(k, "") or "") for k in keys))
                elif status.Status != 0x0000:
                    raise Unavailable(f"the source answered the query with status "
                                      f"{status.Status:04X}", "source")
        finally:
            if assoc.is_established:
                assoc.release()
        return found

    @staticmethod
    def _retrieve_identifier(study_uid: str, series_uid: str) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        return ds

    @staticmethod
    def _outcome(responses) -> tuple[bool, int, str]:
        completed, last = 0, None
        for status, _ in responses:
            if not status:
                return False, completed, "the source ended the retrieval without an answer"
            last = status
            completed = int(status.get("NumberOfCompletedSuboperations", completed) or 0)
        if last is None:
            return False, 0, "no answer"
        if last.Status != 0x0000:
            failed = int(last.get("NumberOfFailedSuboperations", 0) or 0)
            return False, completed, (f"status {last.Status:04X} ({failed} instance(s) "
                                      "failed)")
        return True, completed, ""

    def _move(self, src: Source, study_uid: str, series_uid: str) -> tuple[bool, int, str]:
        ae = AE(ae_title=self.own_ae)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        with self.retrievals.expect(src.subscriber, src.ae_title, src.host) as message_id:
            assoc = self._associate(src, ae)
            try:
                return self._outcome(assoc.send_c_move(
                    self._retrieve_identifier(study_uid, series_uid), self.own_ae,
                    StudyRootQueryRetrieveInformationModelMove, msg_id=message_id))
            finally:
                if assoc.is_established:
                    assoc.release()

    def _get(self, src: Source, study_uid: str, series_uid: str) -> tuple[bool, int, str]:
        loop = self._loop
        stored = []

        def on_store(event):
            data = event.encoded_dataset(include_meta=True)
            try:
                asyncio.run_coroutine_threadsafe(self.ingress.receive(
                    data, owner=src.subscriber, calling=src.ae_title, called=self.own_ae),
                    loop).result(300)
            except MedcomputeError as exc:
                log.warning("dicom: an instance from %s refused: %s", src.ae_title,
                            exc.details)
                return 0xA700 if exc.code_name == "RESOURCE_EXHAUSTED" else 0xC000
            stored.append(1)
            return 0x0000

        ae = AE(ae_title=self.own_ae)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        contexts = GET_STORAGE_CONTEXTS
        for cx in contexts:
            ae.add_requested_context(cx.abstract_syntax)
        roles = [build_role(cx.abstract_syntax, scp_role=True) for cx in contexts]
        assoc = self._associate(src, ae, ext_neg=roles,
                                evt_handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            ok, completed, reason = self._outcome(assoc.send_c_get(
                self._retrieve_identifier(study_uid, series_uid),
                StudyRootQueryRetrieveInformationModelGet))
            return ok, max(completed, len(stored)), reason
        finally:
            if assoc.is_established:
                assoc.release()

    _loop: asyncio.AbstractEventLoop | None = None
    _task: asyncio.Task | None = None

    def bind(self) -> None:
        """Remember the server's event loop (C-GET stores through it)."""
        self._loop = asyncio.get_running_loop()

    # -- the schedule ---------------------------------------------------------------
    async def start(self, poll: float = 1.0) -> None:
        self.bind()
        self._task = asyncio.create_task(self._schedule(poll))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _schedule(self, poll: float) -> None:
        while True:
            now = time.time()
            for src in await self.book.scheduled(now):
                if not await self.book.ran(src, now):
                    continue                # another front end runs this period's collect
                since = (time.strftime("%Y%m%d", time.gmtime(now - src.days * 86400))
                         if src.days else "")
                try:
                    if src.capacity_url:        # an offload source: only when it runs low
                        await self.offload(src)
                    else:
                        await self.collect(src.subscriber, src.name,
                                           Query(modality=src.modality, date_from=since))
                except MedcomputeError as exc:
                    log.warning("dicom: scheduled collect from %s failed: %s", src.ae_title,
                                exc.details)
                except Exception:
                    log.exception("dicom: scheduled collect from %s failed", src.ae_title)
            await asyncio.sleep(poll)
