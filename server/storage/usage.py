"""Usage records read back for reporting and billing: totals, groups, the rules of what counts.

A usage record is the plain dict ``metering.usage_record`` makes (the fields of the
UsageRecord message), kept as JSON in the catalog's ``usage`` table, one per job.

What counts
-----------
- Every job is *billable* except one that failed through the platform's fault
  (``platform_fault``): such a job is recorded and reported, never charged.
- Totals are usage, not charges: they cover every job of the period, billable or not.
- CPU seconds are the ``compute_seconds`` of the jobs that ran on a CPU backend. A job
  ran on a GPU when a GPU time was measured for it (``gpu_seconds`` is present) or its
  backend is a GPU one (``GPU_BACKENDS``); its time is then GPU time, reported as
  ``gpu_seconds`` where it was measured, and never as CPU seconds.
- ``gpu_seconds`` and ``energy_joules`` appear in totals only when at least one record
  of that group measured them; a group without any such measurement has neither (absent,
  not zero).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from medcompute.server.storage.db import Store, schema, table

__all__ = ["GPU_BACKENDS", "GROUPINGS", "UsageBook", "add", "billable", "day_of", "cpu_seconds",
           "for_job", "on_gpu", "records", "summarize", "totals"]

#: The usage table: one record per job (jobs/catalog.py writes it with the job's end).
create = table(schema("""
CREATE TABLE IF NOT EXISTS usage (
    job_id TEXT PRIMARY KEY,
    subscriber TEXT NOT NULL,
    finished_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_subscriber ON usage (subscriber, finished_at);
"""))

GPU_BACKENDS = frozenset({"cupy", "fake-gpu"})
GROUPINGS = ("none", "day", "operation", "device", "subscriber")

_COUNTS = ("images", "voxels", "bytes_in", "bytes_out")
_SECONDS = ("wall_seconds", "queue_seconds")
_MEASURED = ("gpu_seconds", "energy_joules")


def billable(record: dict) -> bool:
    """Whether the job is charged: all are, except failures through the platform's fault."""
    return not record.get("platform_fault", False)


def on_gpu(record: dict) -> bool:
    """Whether the job ran on a GPU backend (a measured GPU time, or a GPU backend's name)."""
    return "gpu_seconds" in record or record.get("backend", "") in GPU_BACKENDS


def cpu_seconds(record: dict) -> float:
    """The job's CPU compute seconds: its ``compute_seconds`` unless it ran on a GPU."""
    return 0.0 if on_gpu(record) else float(record.get("compute_seconds", 0.0))


def totals(records: Iterable[dict]) -> dict:
    """The UsageTotals fields over ``records``, as a dict (``gpu_seconds`` and
    ``energy_joules`` only when some record measured them)."""
    out: dict = {"jobs": 0, "billable_jobs": 0, "failed_jobs": 0, "platform_failures": 0,
                 **dict.fromkeys(_COUNTS, 0), "cpu_seconds": 0.0, "fallbacks": 0,
                 **dict.fromkeys(_SECONDS, 0.0)}
    for r in records:
        out["jobs"] += 1
        out["billable_jobs"] += billable(r)
        out["failed_jobs"] += r.get("state") == "FAILED"
        out["platform_failures"] += bool(r.get("platform_fault", False))
        for key in _COUNTS:
            out[key] += int(r.get(key, 0))
        out["cpu_seconds"] += cpu_seconds(r)
        out["fallbacks"] += bool(r.get("fallback", False))
        for key in _SECONDS:
            out[key] += float(r.get(key, 0.0))
        for key in _MEASURED:
            if r.get(key) is not None:
                out[key] = out.get(key, 0.0) + float(r[key])
    return out


def day_of(ts: float) -> str:
    """The UTC date (YYYY-MM-DD) of unix seconds."""
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d")


def _day(record: dict) -> str:
    return day_of(record.get("finished_at", 0.0))


def _keys(record: dict, group_by: str) -> list[str]:
    if group_by == "none":
        return [""]
    if group_by == "day":
        return [_day(record)]
    if group_by == "operation":
        # Once under each distinct operation; a job without any under "".
        return list(dict.fromkeys(record.get("operations") or [""]))
    return [str(record.get(group_by, ""))]


def summarize(records: Iterable[dict], group_by: str = "none"
              ) -> tuple[dict, list[tuple[str, dict]]]:
    """Totals over every record, and the totals of each group, sorted by key.

    Parameters
    ----------
    records : iterable of dict
        Usage records.
    group_by : {"none", "day", "operation", "device", "subscriber"}
        ``day`` is the UTC date (YYYY-MM-DD) of ``finished_at``; under ``operation`` a
        job counts once under each of its distinct operations (so the groups may add
        up to more than the totals); ``none`` gives one group, keyed "", when there is
        any record.

    Returns
    -------
    (dict, list of (str, dict))
        The totals (UsageTotals fields) and the groups.

    Examples
    --------
    >>> total, groups = summarize([{"state": "SUCCEEDED", "device": "cpu"}], "device")
    >>> total["jobs"], groups[0][0]
    (1, 'cpu')
    """
    if group_by not in GROUPINGS:
        raise ValueError(f"group_by: expected one of {', '.join(GROUPINGS)}, got {group_by!r}")
    records = list(records)
    members: dict[str, list[dict]] = {}
    for r in records:
        for key in _keys(r, group_by):
            members.setdefault(key, []).append(r)
    return totals(records), [(key, totals(members[key])) for key in sorted(members)]


def add(tx, job_id: str, subscriber: str, finished_at: float, record: dict) -> None:
    """Store the usage ``record`` of a job, in the transaction ``tx`` that records its end.
    Exactly one usage record per job: a second write for the same job is ignored."""
    tx.execute("INSERT INTO usage (job_id, subscriber, finished_at, record)"
               " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
               (job_id, subscriber, finished_at, json.dumps(record, sort_keys=True)))


def for_job(tx, job_id: str) -> list[dict]:
    """Every usage record stored for a job (there is at most one)."""
    rows = tx.execute("SELECT record FROM usage WHERE job_id = ?", (job_id,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def records(tx, subscriber: str | None, since: float = 0.0, until: float = 0.0,
            limit: int | None = None) -> list[dict]:
    """Usage records finished in [since, until), oldest first (see
    :meth:`UsageBook.records`)."""
    where, args = ["1 = 1"], []
    if subscriber is not None:
        where.append("subscriber = ?")
        args.append(subscriber)
    if since:
        where.append("finished_at >= ?")
        args.append(since)
    if until:
        where.append("finished_at < ?")
        args.append(until)
    tail = "" if limit is None else f" LIMIT {int(limit)}"
    rows = tx.execute(f"SELECT record FROM usage WHERE {' AND '.join(where)} "
                      f"ORDER BY finished_at, job_id{tail}", args).fetchall()
    return [json.loads(text) for (text,) in rows]


class UsageBook(Store):
    """Reads the usage records of one data directory (the ``usage`` table): a facade over
    :func:`records`, built on the server's shared Database or on a data directory (it
    then opens its own)."""

    TABLES = (create,)

    def records(self, subscriber: str | None, since: float = 0.0, until: float = 0.0,
                limit: int | None = None) -> list[dict]:
        """Usage records finished in [since, until), oldest first.

        ``subscriber`` None means every subscriber; ``since`` or ``until`` 0 leaves that
        end open; ``limit`` None returns them all.
        """
        return self.db.run(records, subscriber, since, until, limit)

    async def arecords(self, subscriber: str | None, since: float = 0.0, until: float = 0.0,
                       limit: int | None = None) -> list[dict]:
        """:meth:`records`, off the event loop."""
        return await self.db.read(records, subscriber, since, until, limit)
