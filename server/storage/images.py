"""The image store's tables in the SQLite catalog: one row per image, one per blob it uses.

Same file and the same rules as the other tables (``db.py``: WAL, ``synchronous=FULL``,
one connection used under a lock from worker threads). Every change that installs or
removes blob files does so inside a ``BEGIN IMMEDIATE`` transaction, which holds
SQLite's write lock: installing blobs and inserting their row is one step for
every other connection (a server sharing the store, the orphan sweep), and a blob
is removed only while no row refers to it.

The storage ledger meters what each subscriber keeps stored, for billing: one row per
change of an image's stored bytes (+ when it is registered or gains a blob such as a
cached preview, − what was counted for it when it is deleted or purged), written in
the same transaction as the change itself. Integrating it over a period gives
gigabyte-days. Each image counts the bytes of its own blobs, even where two images
share a content-addressed blob file.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medcompute.server.storage import capacity
from medcompute.server.storage.db import Store, add_columns, table
from medcompute.server.storage.image_tiers import TierLedger

__all__ = ["BlobRef", "ImageRecord", "FindFilter", "ImageCatalog", "PAGE_MAX"]

PAGE_MAX = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    modality TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    acquisition_date TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    source_id TEXT NOT NULL,
    derivation_key TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS images_identity ON images (owner, identity);
CREATE INDEX IF NOT EXISTS images_owner ON images (owner, created_at, id);
CREATE INDEX IF NOT EXISTS images_patient ON images (owner, patient_id);
CREATE INDEX IF NOT EXISTS images_study ON images (owner, study_uid);
CREATE INDEX IF NOT EXISTS images_series ON images (owner, series_uid);
CREATE INDEX IF NOT EXISTS images_expiry ON images (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS images_derivation ON images (owner, derivation_key)
    WHERE derivation_key != '';
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    info TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (image_id, role)
);
CREATE INDEX IF NOT EXISTS image_blobs_digest ON image_blobs (digest);
CREATE TABLE IF NOT EXISTS storage_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber TEXT NOT NULL,
    at REAL NOT NULL,
    delta_bytes INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    tier TEXT NOT NULL DEFAULT 'hot'
);
CREATE INDEX IF NOT EXISTS storage_ledger_subscriber ON storage_ledger (subscriber, at);
CREATE INDEX IF NOT EXISTS storage_ledger_image ON storage_ledger (image_id);
-- The storage tier of a blob file that is not in the data directory ('hot'): no row, hot.
CREATE TABLE IF NOT EXISTS blob_tiers (
    digest TEXT PRIMARY KEY,
    tier TEXT NOT NULL
);
""" + capacity.SCHEMA

_GIGABYTE_DAY = 1e9 * 86400


@dataclass(frozen=True)
class BlobRef:
    role: str            # "voxels" | "dicom" | "preview"
    digest: str          # sha256 hex of the file
    size: int            # bytes on disk
    info: str = ""       # JSON facts about it (a preview's size and rendering)
    tier: str = "hot"    # the storage tier the catalog puts its file in (tiers.py)


@dataclass(frozen=True)
class ImageRecord:
    """One stored image. ``metadata`` holds what the API's ImageMetadata holds."""

    id: str
    owner: str
    identity: str                         # unique per owner: the instance, or the job
    kind: str                             # "original" | "derived"
    shape: tuple[int, ...]
    dtype: str                            # NumPy dtype string, little-endian
    size: int                             # decoded voxel bytes
    crc32: int                            # of the decoded voxel bytes
    created_at: float
    spacing: tuple[float, ...] | None = None
    expires_at: float | None = None
    metadata: dict = field(default_factory=dict)
    file_sizes: tuple[int, ...] = ()      # of the DICOM blob's files
    dicom_crc32: int = 0                  # of the DICOM blob's bytes
    blobs: tuple[BlobRef, ...] = ()
    source_id: str = ""
    operand_ids: tuple[str, ...] = ()
    operations: tuple[str, ...] = ()
    derivation: str = ""                  # the applied operations, resolved
    derivation_key: str = ""              # of the request that made it (reuse)
    job_id: str = ""
    computed: dict = field(default_factory=dict)   # backend, device, versions of the job

    def blob(self, role: str) -> BlobRef | None:
        return next((b for b in self.blobs if b.role == role), None)

    @property
    def tier(self) -> str:
        """The tier of the original's files (its voxels)."""
        voxels = self.blob("voxels")
        return voxels.tier if voxels is not None else "hot"

    @property
    def stored_bytes(self) -> int:
        return sum(b.size for b in self.blobs)


@dataclass(frozen=True)
class FindFilter:
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    modality: str = ""
    date_from: str = ""                   # YYYYMMDD, inclusive
    date_to: str = ""
    registered_by: str = ""
    kind: str = ""
    source_id: str = ""


def _row(r: ImageRecord) -> tuple:
    m = r.metadata
    record = asdict(r)
    record.pop("blobs")
    return (r.id, r.owner, r.identity, r.kind, m.get("modality", ""), m.get("patient_id", ""),
            m.get("study_instance_uid", ""), m.get("series_instance_uid", ""),
            m.get("acquisition_date", ""), r.created_at, r.expires_at, r.source_id,
            r.derivation_key, json.dumps(record, sort_keys=True))


def _record(text: str, blobs: Iterable[tuple]) -> ImageRecord:
    data = json.loads(text)
    for key in ("shape", "file_sizes", "operand_ids", "operations"):
        data[key] = tuple(data[key])
    if data["spacing"] is not None:
        data["spacing"] = tuple(data["spacing"])
    data["blobs"] = tuple(BlobRef(*row) for row in blobs)
    return ImageRecord(**data)


def encode_token(created_at: float, image_id: str) -> str:
    raw = json.dumps([created_at, image_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[float, str]:
    """ValueError when the token is not one `encode_token` made."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, image_id = json.loads(raw)
        return float(created_at), str(image_id)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a page token of this server") from exc


@table
def create(tx) -> None:
    """The image tables; a catalog written before storage tiers: its ledger rows are all
    hot."""
    tx.executescript(_SCHEMA)
    add_columns(tx, "storage_ledger", {"tier": "TEXT NOT NULL DEFAULT 'hot'"})


class ImageCatalog(TierLedger, Store):
    """The image rows of one data directory's catalog file."""

    TABLES = (create,)

    def __init__(self, data_dir: str | Path):
        super().__init__(data_dir)
        self._run(self._backfill)

    def _blobs_of(self, image_id: str) -> list[tuple]:
        return self._db.execute("SELECT b.role, b.digest, b.size, b.info, COALESCE(t.tier, "
                                "'hot') FROM image_blobs b LEFT JOIN blob_tiers t ON t.digest "
                                "= b.digest WHERE b.image_id = ? ORDER BY b.role",
                                (image_id,)).fetchall()

    def _select(self, where: str, args: tuple, tail: str = "") -> list[ImageRecord]:
        rows = self._db.execute(f"SELECT id, record FROM images WHERE {where} {tail}",
                                args).fetchall()
        return [_record(text, self._blobs_of(image_id)) for image_id, text in rows]

    # -- adding ---------------------------------------------------------------------
    def _add(self, record: ImageRecord, install: Callable[[], None],
             field: str = "header.image"):
        def step():
            existing = self._select("owner = ? AND identity = ?", (record.owner, record.identity))
            if existing:
                return existing[0], True
            capacity.check(self._db, record.owner, record.stored_bytes, field)
            install()
            for b in record.blobs:   # a shared blob moved to cold is hot again: just written
                self._switch_step(b.digest, "hot")
            self._db.execute("INSERT INTO images (id, owner, identity, kind, modality, "
                             "patient_id, study_uid, series_uid, acquisition_date, created_at,"
                             " expires_at, source_id, derivation_key, record) VALUES "
                             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(record))
            self._db.executemany(
                "INSERT INTO image_blobs (image_id, role, digest, size, info) VALUES "
                "(?, ?, ?, ?, ?)", [(record.id, b.role, b.digest, b.size, b.info)
                                    for b in record.blobs])
            self._meter(record.owner, record.created_at, record.stored_bytes, record.id)
            return record, False
        return self._transaction(step)

    async def add(self, record: ImageRecord, install: Callable[[], None],
                  field: str = "header.image") -> tuple[ImageRecord, bool]:
        """Insert ``record`` unless its owner already has its identity.

        ``install()`` (putting its blob files in place) runs inside the transaction,
        only when the row is new and fits its owner's allocated capacity (else
        CapacityExceeded naming ``field``). Returns the stored record and whether it
        existed.
        """
        return await self._call(self._add, record, install, field)

    def _add_blob(self, image_id: str, blob: BlobRef, install: Callable[[], None],
                  field: str | None = None) -> bool:
        def step():
            owner = self._db.execute("SELECT owner FROM images WHERE id = ?",
                                     (image_id,)).fetchone()
            if not owner:
                return False
            replaced = self._db.execute("SELECT size FROM image_blobs WHERE image_id = ? AND "
                                        "role = ?", (image_id, blob.role)).fetchone()
            if field is not None:
                capacity.check(self._db, owner[0], blob.size - (replaced[0] if replaced else 0),
                               field)
            install()
            self._meter(owner[0], time.time(), blob.size - (replaced[0] if replaced else 0),
                        image_id)
            self._db.execute("INSERT OR REPLACE INTO image_blobs (image_id, role, digest, size,"
                             " info) VALUES (?, ?, ?, ?, ?)", (image_id, blob.role, blob.digest,
                                                              blob.size, blob.info))
            return True
        return self._transaction(step)

    async def add_blob(self, image_id: str, blob: BlobRef, install: Callable[[], None], *,
                       field: str | None = None) -> bool:
        """Attach one more blob (a cached preview, a version); False when the image is
        gone. With ``field``, refused (CapacityExceeded naming it) beyond the owner's
        allocated capacity; without, a cache that is counted but never refused."""
        return await self._call(self._add_blob, image_id, blob, install, field)

    # -- reading --------------------------------------------------------------------
    def _get(self, image_id: str, owner: str | None) -> ImageRecord | None:
        if owner is None:
            found = self._select("id = ?", (image_id,))
        else:
            found = self._select("id = ? AND owner = ?", (image_id, owner))
        return found[0] if found else None

    async def get(self, image_id: str, owner: str | None) -> ImageRecord | None:
        """The image, when it exists and (unless ``owner`` is None) belongs to ``owner``."""
        return await self._call(self._get, image_id, owner)

    def _by_identity(self, owner: str, identity: str) -> ImageRecord | None:
        found = self._select("owner = ? AND identity = ?", (owner, identity))
        return found[0] if found else None

    async def by_identity(self, owner: str, identity: str) -> ImageRecord | None:
        return await self._call(self._by_identity, owner, identity)

    def _by_derivation(self, owner: str, key: str) -> ImageRecord | None:
        found = self._select("owner = ? AND derivation_key = ?", (owner, key),
                             "ORDER BY created_at DESC LIMIT 1")
        return found[0] if found else None

    async def by_derivation(self, owner: str, key: str) -> ImageRecord | None:
        return await self._call(self._by_derivation, owner, key)

    def _find(self, f: FindFilter, owner: str, limit: int, after: tuple[float, str] | None):
        clauses, args = ["owner = ?"], [owner]
        for column, value in (("patient_id", f.patient_id), ("study_uid", f.study_uid),
                              ("series_uid", f.series_uid), ("modality", f.modality),
                              ("kind", f.kind), ("source_id", f.source_id),
                              ("owner", f.registered_by)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if f.date_from:
            clauses.append("acquisition_date != '' AND acquisition_date >= ?")
            args.append(f.date_from)
        if f.date_to:
            clauses.append("acquisition_date != '' AND acquisition_date <= ?")
            args.append(f.date_to)
        if after is not None:
            clauses.append("(created_at, id) > (?, ?)")
            args.extend(after)
        found = self._select(" AND ".join(clauses), tuple(args),
                             f"ORDER BY created_at, id LIMIT {int(limit) + 1}")
        more = len(found) > limit
        found = found[:limit]
        token = encode_token(found[-1].created_at, found[-1].id) if more else ""
        return found, token

    async def find(self, f: FindFilter, *, owner: str, limit: int,
                   after: tuple[float, str] | None = None) -> tuple[list[ImageRecord], str]:
        """One page of ``owner``'s images matching ``f``, oldest first, and the next token."""
        return await self._call(self._find, f, owner, limit, after)

    def _expired(self, now: float) -> list[ImageRecord]:
        return self._select("expires_at IS NOT NULL AND expires_at <= ?", (now,),
                            "ORDER BY expires_at")

    async def expired(self, now: float) -> list[ImageRecord]:
        return await self._call(self._expired, now)

    def _blob_rows(self) -> list[tuple]:
        return self._db.execute("SELECT image_id, role, digest, size FROM image_blobs "
                                "ORDER BY digest").fetchall()

    async def blob_rows(self) -> list[tuple]:
        """(image id, role, digest, size) of every blob reference."""
        return await self._call(self._blob_rows)

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    async def count(self) -> int:
        return await self._call(self._count)

    def _exclusive_bytes(self, ids: list[str]) -> int:
        """Bytes of the blobs only these images use (what deleting them frees)."""
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        row = self._db.execute(
            f"SELECT COALESCE(SUM(size), 0) FROM (SELECT DISTINCT digest, size FROM image_blobs "
            f"WHERE image_id IN ({marks}) AND digest NOT IN (SELECT digest FROM image_blobs "
            f"WHERE image_id NOT IN ({marks})))", (*ids, *ids)).fetchone()
        return int(row[0])

    async def exclusive_bytes(self, ids: list[str]) -> int:
        return await self._call(self._exclusive_bytes, ids)

    # -- removing -------------------------------------------------------------------
    def _derived_from(self, image_id: str) -> list[ImageRecord]:
        # Image ids are unique 32-digit hex: quoted, they appear in a record's JSON only as
        # its own id, its source_id or one of its operand_ids.
        return self._select("id != ? AND kind = 'derived' AND (source_id = ? OR record LIKE ?)",
                            (image_id, image_id, f'%"{image_id}"%'), "ORDER BY created_at, id")

    def _remove_row(self, record: ImageRecord) -> None:
        self._db.execute("DELETE FROM images WHERE id = ?", (record.id,))
        at = time.time()
        for tier, counted in self._db.execute(
                "SELECT tier, COALESCE(SUM(delta_bytes), 0) FROM storage_ledger WHERE "
                "image_id = ? GROUP BY tier ORDER BY tier", (record.id,)).fetchall():
            self._meter(record.owner, at, -counted, record.id, tier)

    def _delete(self, image_id: str, owner: str | None) -> list[ImageRecord]:
        def step():
            record = self._get(image_id, owner)
            if record is None:
                return []
            gone, todo = [], [record]
            while todo:
                r = todo.pop(0)
                if any(g.id == r.id for g in gone):
                    continue
                gone.append(r)
                todo.extend(self._derived_from(r.id))
            for r in gone:
                self._remove_row(r)
            return gone
        return self._transaction(step)

    async def delete(self, image_id: str, owner: str | None) -> list[ImageRecord]:
        """Remove the row and (transitively) every image derived from it (its source or
        an operand), with their blob references: the records removed, the image first;
        empty when it was not found. One transaction: no derived image outlives it."""
        return await self._call(self._delete, image_id, owner)

    def _release(self, digests: Iterable[str], remove: Callable[[str], int]) -> tuple[int, int]:
        def step():
            freed = removed = 0
            for digest in sorted(set(digests)):
                used = self._db.execute("SELECT 1 FROM image_blobs WHERE digest = ? LIMIT 1",
                                        (digest,)).fetchone()
                if not used:
                    self._db.execute("DELETE FROM blob_tiers WHERE digest = ?", (digest,))
                    size = remove(digest)
                    freed += size
                    removed += 1 if size else 0
            return freed, removed
        return self._transaction(step)

    async def release(self, digests: Iterable[str], remove: Callable[[str], int]
                      ) -> tuple[int, int]:
        """Remove each blob no row refers to any more; (bytes freed, blobs removed)."""
        return await self._call(self._release, list(digests), remove)

    def _sweep(self, present: Callable[[], Iterable[str]], remove: Callable[[str], int]) -> int:
        def step():
            used = {r[0] for r in self._db.execute("SELECT DISTINCT digest FROM image_blobs")}
            orphans = [d for d in present() if d not in used]
            for digest in orphans:
                remove(digest)
            return len(orphans)
        return self._transaction(step)

    async def sweep(self, present: Callable[[], Iterable[str]],
                    remove: Callable[[str], int]) -> int:
        """Remove blob files no row refers to (left by a write that was interrupted)."""
        return await self._call(self._sweep, present, remove)

    # -- storage ledger ---------------------------------------------------------------
    def _meter(self, subscriber: str, at: float, delta: int, image_id: str,
               tier: str = "hot") -> None:
        """One ledger row; the caller's transaction holds it together with the change."""
        if delta:
            self._db.execute("INSERT INTO storage_ledger (subscriber, at, delta_bytes, image_id,"
                             " tier) VALUES (?, ?, ?, ?, ?)",
                             (subscriber, at, int(delta), image_id, tier))

    def _all_images(self) -> list[ImageRecord]:
        return self._select("1", (), "ORDER BY created_at, id")

    async def all_images(self) -> list[ImageRecord]:
        """Every image of every subscriber, oldest first."""
        return await self._call(self._all_images)

    def _backfill(self) -> None:
        """A catalog written before the ledger existed: one row per image, at its creation."""
        def needed() -> bool:
            return bool(self._db.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM storage_ledger) AND "
                "EXISTS (SELECT 1 FROM images)").fetchone()[0])

        def step():
            if needed():   # checked again under the write lock: another process may be here
                self._db.execute(
                    "INSERT INTO storage_ledger (subscriber, at, delta_bytes, image_id) "
                    "SELECT i.owner, i.created_at, SUM(b.size), i.id FROM images i "
                    "JOIN image_blobs b ON b.image_id = i.id GROUP BY i.id "
                    "HAVING SUM(b.size) != 0 ORDER BY i.created_at, i.id")
        if needed():
            self._transaction(step)

    def _gigabyte_days(self, subscriber: str | None, since: float, until: float,
                       now: float | None, tier: str | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        end = min(until, now) if until else now
        where, args = "at < ?", [end]
        if subscriber is not None:
            where += " AND subscriber = ?"
            args.append(subscriber)
        if tier is not None:
            where += " AND tier = ?"
            args.append(tier)
        rows = self._db.execute(f"SELECT subscriber, at, delta_bytes FROM storage_ledger WHERE "
                                f"{where} ORDER BY subscriber, at, seq", args).fetchall()
        byte_seconds: dict[str, float] = {} if subscriber is None else {subscriber: 0.0}
        level: dict[str, int] = {}
        last: dict[str, float] = {}
        for name, at, delta in rows:
            held, prev = level.get(name, 0), last.get(name, since)
            if at > prev:
                byte_seconds[name] = byte_seconds.get(name, 0.0) + held * (at - prev)
                last[name] = at
            else:
                byte_seconds.setdefault(name, 0.0)
            level[name] = held + delta
        for name, held in level.items():
            prev = last.get(name, since)
            if end > prev:
                byte_seconds[name] += held * (end - prev)
        return {name: value / _GIGABYTE_DAY for name, value in byte_seconds.items()}

    def gigabyte_days(self, subscriber: str | None, since: float = 0.0, until: float = 0.0,
                      *, now: float | None = None) -> dict[str, float]:
        """Stored bytes integrated over [since, until), per subscriber, in gigabyte-days
        (10^9 bytes kept for 24 hours).

        ``subscriber`` None: every subscriber with a ledger entry before the end (always
        included when named). ``since`` 0: from the first entry; ``until`` 0, or any end
        later than ``now`` (default: the current time): up to ``now``, so that time not
        yet passed is never counted.
        """
        return self._run(self._gigabyte_days, subscriber, since, until, now)

    async def agigabyte_days(self, subscriber: str | None, since: float = 0.0,
                             until: float = 0.0, *, now: float | None = None,
                             tier: str | None = None) -> dict[str, float]:
        """:meth:`gigabyte_days`, off the event loop; ``tier``: of that tier only."""
        return await self._call(self._gigabyte_days, subscriber, since, until, now, tier)

    def _stored_bytes_now(self, subscriber: str | None) -> dict[str, int]:
        where, args = ("WHERE subscriber = ?", (subscriber,)) if subscriber is not None else (
            "", ())
        rows = self._db.execute(f"SELECT subscriber, SUM(delta_bytes) FROM storage_ledger "
                                f"{where} GROUP BY subscriber ORDER BY subscriber",
                                args).fetchall()
        found = {name: int(total) for name, total in rows}
        if subscriber is not None:
            found.setdefault(subscriber, 0)
        return found

    def stored_bytes_now(self, subscriber: str | None = None) -> dict[str, int]:
        """Bytes each subscriber keeps stored now, by the ledger (None: every subscriber)."""
        return self._run(self._stored_bytes_now, subscriber)

    async def astored_bytes_now(self, subscriber: str | None = None) -> dict[str, int]:
        """:meth:`stored_bytes_now`, off the event loop."""
        return await self._call(self._stored_bytes_now, subscriber)

    # -- backup ---------------------------------------------------------------------
    def _backup(self, dest: Path) -> None:
        target = sqlite3.connect(dest, isolation_level=None)
        try:
            self._db.backup(target)   # one step: a consistent snapshot of every table
            target.execute("PRAGMA journal_mode=WAL")
        finally:
            target.close()

    async def backup(self, dest: Path) -> None:
        """Copy the whole catalog file (images, jobs, usage) as one snapshot to ``dest``."""
        await self._call(self._backup, Path(dest))
