"""The catalog: job bookkeeping per second and per-call latency on SQLite and on
PostgreSQL in the same run, and on PostgreSQL with two front ends.

One job's bookkeeping is what a server writes for it (jobs/catalog.py through
``Catalog``): the job admitted (RECEIVING), QUEUED, RUNNING, then its end with its usage
record and an audit entry in one transaction, four durable writes. ``clients``
coroutines of one process do it for their share of ``jobs`` jobs at once, so the
writes meet in group commits as the server's do.

- sqlite: the data directory's catalog file (WAL, synchronous=FULL), the baseline;
- postgresql: a PostgreSQL started for the run from Debian's package (tests/postgres_peer,
  fsync on, as a deployment runs it), on loopback, one front end;
- postgresql, two front ends: two processes, each with its own pool, the same load each
  on the same database (the writers' advisory lock serialises them, as on two hosts).

Figures: jobs/s of bookkeeping (all processes together), and the median and 95th
percentile of one write call's latency (from the call to its commit); ratios against
the SQLite baseline of the same run, and of two front ends against one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]

#: Jobs per measurement and concurrent writers per process, by mode.
JOBS = {"full": 2000, "quick": 600, "tiny": 40}
CLIENTS = 16


def _workload(spec: str, jobs: int, clients: int, prefix: str) -> dict:
    """Run ``jobs`` jobs' bookkeeping on the catalog ``spec``; seconds and latencies."""
    from medcompute.server.jobs import states
    from medcompute.server.jobs.catalog import Catalog
    from medcompute.server.storage import audit as audit_table
    from medcompute.server.storage.audit import AuditLog
    from medcompute.server.storage.db import Database

    db = Database.open(spec)
    catalog, log = Catalog(db, runner=prefix), AuditLog(db)
    latencies: list[float] = []

    async def timed(coro):
        start = time.perf_counter()
        out = await coro
        latencies.append(time.perf_counter() - start)
        return out

    async def one(k: int) -> None:
        now = time.time()
        job = states.new_job(subscriber="bench", operations=["gaussian"], inputs=["inline:8"],
                             device="cpu", created_at=now, job_id=f"{prefix}-{k}")
        await timed(catalog.put_job(job))
        job = states.apply(job, states.InputsReceived(now))
        await timed(catalog.put_job(job))
        job = states.apply(job, states.Started(now, "tcp://w"))
        await timed(catalog.put_job(job))
        done = states.apply(job, states.Succeeded(time.time()))
        entry = audit_table.AuditEntry(0, time.time(), "bench", "Submit", job.id, "OK", "")
        await timed(catalog.finish_job(done, {"job_id": job.id, "compute_seconds": 0.01},
                                       extra=lambda tx: audit_table.add(tx, entry)))

    async def main() -> float:
        queue = list(range(jobs))

        async def client():
            while queue:
                await one(queue.pop())
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - start

    try:
        seconds = asyncio.run(main())
        commits, writes = db.commits, db.committed_writes
    finally:
        log.close()
        catalog.close()
        db.close()
    return {"seconds": seconds, "latencies": latencies, "commits": commits, "writes": writes}


def _summary(jobs: int, runs: list[dict]) -> dict:
    seconds = max(r["seconds"] for r in runs)          # until the last front end is done
    latencies = sorted(x for r in runs for x in r["latencies"])
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds,
            "call_median_ms": statistics.median(latencies) * 1000, "call_p95_ms": p95 * 1000,
            "writes_per_commit": sum(r["writes"] for r in runs) / max(
                1, sum(r["commits"] for r in runs))}


def _in_process(args) -> dict:
    spec, jobs, clients, prefix = args
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return _workload(spec, jobs, clients, prefix)


def run(sizes: common.Sizes, log) -> dict:
    jobs = JOBS.get(sizes.name, JOBS["quick"])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from tests.postgres_peer import PostgresServer, bindir
        bindir()
        import psycopg  # noqa: F401
    except (ImportError, RuntimeError) as exc:
        return common.absent(f"PostgreSQL or psycopg is missing ({exc}); `make postgres` "
                             "and the test extras install them")
    out: dict = {"available": True, "clients_per_front_end": CLIENTS, "jobs": jobs,
                 "writes_per_job": 4}
    with tempfile.TemporaryDirectory(prefix="medcompute-catalog-bench-") as tmp:
        log(f"catalog: {jobs} jobs' bookkeeping on SQLite")
        out["sqlite"] = _summary(jobs, [_workload(f"sqlite:{tmp}/catalog.sqlite3", jobs,
                                                  CLIENTS, "s")])
        with PostgresServer(durable=True) as pg:
            log(f"catalog: {jobs} jobs' bookkeeping on PostgreSQL, one front end")
            out["postgresql"] = _summary(jobs, [_workload(pg.fresh_url(), jobs, CLIENTS,
                                                          "p")])
            log(f"catalog: {jobs} jobs' bookkeeping each on PostgreSQL, two front ends")
            url = pg.fresh_url()
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(2) as pool:
                runs = pool.map(_in_process, [(url, jobs, CLIENTS, f"f{k}") for k in range(2)])
            out["postgresql_two_front_ends"] = _summary(2 * jobs, runs)
    base = out["sqlite"]["jobs_per_s"]
    out["postgresql_vs_sqlite"] = out["postgresql"]["jobs_per_s"] / base
    out["two_front_ends_vs_one"] = (out["postgresql_two_front_ends"]["jobs_per_s"]
                                    / out["postgresql"]["jobs_per_s"])
    for name in ("sqlite", "postgresql", "postgresql_two_front_ends"):
        r = out[name]
        log(f"catalog: {name}: {r['jobs_per_s']:.0f} jobs/s, call median "
            f"{r['call_median_ms']:.2f} ms, p95 {r['call_p95_ms']:.2f} ms, "
            f"{r['writes_per_commit']:.1f} writes per commit")
    out["notes"] = ["PostgreSQL on loopback on the same machine, fsync on; a database on "
                    "another host adds a network round trip to every call"]
    return out
