"""The image store's tables in the SQLite catalog: one row per image, one per blob it uses.

Same file and the same rules as the other tables (``db.py``: WAL, ``synchronous=FULL``,
one connection used under a lock from worker threads). The SQL is in functions taking
``tx``, the connection inside the transaction, passed explicitly (``Database.write``,
``read``, ``transaction``); :class:`ImageCatalog` is the facade over them. The functions
that change rows (``add``, ``add_blob``, ``delete``, ``release``, ``sweep``) expect a
write transaction (``BEGIN IMMEDIATE``, which holds SQLite's write lock) and install or
remove blob files inside it: installing blobs and inserting their row is one step for
every other connection (a server sharing the store, the orphan sweep), and a blob is
removed only while no row refers to it. A caller may compose them with other tables'
functions in one ``db.write``.

The storage ledger (image_tiers.py) meters what each subscriber keeps stored, for
billing: one row per change of an image's stored bytes (+ when it is registered or gains
a blob such as a cached preview, − what was counted for it when it is deleted or purged),
written in the same transaction as the change itself. Each image counts the bytes of its
own blobs, even where two images share a content-addressed blob file.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medcompute.server.storage import capacity, instance_headers
from medcompute.server.storage.db import Store, add_columns, table
from medcompute.server.storage.image_tiers import TierLedger, backfill, backfill_needed, meter
from medcompute.server.storage.image_tiers import switch_tier as _switch_tier

__all__ = ["BlobRef", "ImageRecord", "FindFilter", "ImageCatalog", "PAGE_MAX", "add",
           "add_blob", "all_images", "backup", "blob_rows", "by_derivation", "by_identity",
           "count", "delete", "exclusive_bytes", "expired", "find", "get", "release", "sweep"]

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


def _blobs_of(tx, image_id: str) -> list[tuple]:
    return tx.execute("SELECT b.role, b.digest, b.size, b.info, COALESCE(t.tier, 'hot') "
                      "FROM image_blobs b LEFT JOIN blob_tiers t ON t.digest = b.digest "
                      "WHERE b.image_id = ? ORDER BY b.role", (image_id,)).fetchall()


def _select(tx, where: str, args: tuple, tail: str = "") -> list[ImageRecord]:
    rows = tx.execute(f"SELECT id, record FROM images WHERE {where} {tail}", args).fetchall()
    return [_record(text, _blobs_of(tx, image_id)) for image_id, text in rows]


def _first(found: list[ImageRecord]) -> ImageRecord | None:
    return found[0] if found else None


# -- adding -------------------------------------------------------------------------
def add(tx, record: ImageRecord, install: Callable[[], None],
        field: str = "header.image") -> tuple[ImageRecord, bool]:
    """Insert ``record`` unless its owner already has its identity (write transaction).

    ``install()`` (putting its blob files in place) runs inside the transaction, only
    when the row is new and fits its owner's allocated capacity (else CapacityExceeded
    naming ``field``). Returns the stored record and whether it existed.
    """
    existing = by_identity(tx, record.owner, record.identity)
    if existing is not None:
        return existing, True
    capacity.check(tx, record.owner, record.stored_bytes, field)
    install()
    for b in record.blobs:       # a shared blob moved to cold is hot again: just written
        _switch_tier(tx, b.digest, "hot")
    tx.execute("INSERT INTO images (id, owner, identity, kind, modality, patient_id, "
               "study_uid, series_uid, acquisition_date, created_at, expires_at, source_id, "
               "derivation_key, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               _row(record))
    tx.executemany("INSERT INTO image_blobs (image_id, role, digest, size, info) VALUES "
                   "(?, ?, ?, ?, ?)", [(record.id, b.role, b.digest, b.size, b.info)
                                       for b in record.blobs])
    meter(tx, record.owner, record.created_at, record.stored_bytes, record.id)
    return record, False


def add_blob(tx, image_id: str, blob: BlobRef, install: Callable[[], None],
             field: str | None = None) -> bool:
    """Attach one more blob (a cached preview, a version); False when the image is gone
    (write transaction). With ``field``, refused (CapacityExceeded naming it) beyond the
    owner's allocated capacity; without, a cache that is counted but never refused."""
    owner = tx.execute("SELECT owner FROM images WHERE id = ?", (image_id,)).fetchone()
    if not owner:
        return False
    replaced = tx.execute("SELECT size FROM image_blobs WHERE image_id = ? AND role = ?",
                          (image_id, blob.role)).fetchone()
    grows = blob.size - (replaced[0] if replaced else 0)
    if field is not None:
        capacity.check(tx, owner[0], grows, field)
    install()
    meter(tx, owner[0], time.time(), grows, image_id)
    tx.execute("INSERT INTO image_blobs (image_id, role, digest, size, info) "
               "VALUES (?, ?, ?, ?, ?) ON CONFLICT (image_id, role) DO UPDATE SET "
               "digest = excluded.digest, size = excluded.size, info = excluded.info",
               (image_id, blob.role, blob.digest, blob.size, blob.info))
    return True


# -- reading ------------------------------------------------------------------------
def get(tx, image_id: str, owner: str | None) -> ImageRecord | None:
    """The image, when it exists and (unless ``owner`` is None) belongs to ``owner``."""
    if owner is None:
        return _first(_select(tx, "id = ?", (image_id,)))
    return _first(_select(tx, "id = ? AND owner = ?", (image_id, owner)))


def by_identity(tx, owner: str, identity: str) -> ImageRecord | None:
    return _first(_select(tx, "owner = ? AND identity = ?", (owner, identity)))


def by_derivation(tx, owner: str, key: str) -> ImageRecord | None:
    return _first(_select(tx, "owner = ? AND derivation_key = ?", (owner, key),
                          "ORDER BY created_at DESC LIMIT 1"))


def find(tx, f: FindFilter, owner: str, limit: int, after: tuple[float, str] | None = None
         ) -> tuple[list[ImageRecord], str]:
    """One page of ``owner``'s images matching ``f``, oldest first, and the next token."""
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
    found = _select(tx, " AND ".join(clauses), tuple(args),
                    f"ORDER BY created_at, id LIMIT {int(limit) + 1}")
    more = len(found) > limit
    found = found[:limit]
    token = encode_token(found[-1].created_at, found[-1].id) if more else ""
    return found, token


def expired(tx, now: float) -> list[ImageRecord]:
    return _select(tx, "expires_at IS NOT NULL AND expires_at <= ?", (now,),
                   "ORDER BY expires_at")


def all_images(tx) -> list[ImageRecord]:
    """Every image of every subscriber, oldest first."""
    return _select(tx, "1 = 1", (), "ORDER BY created_at, id")


def blob_rows(tx) -> list[tuple]:
    """(image id, role, digest, size) of every blob reference."""
    return tx.execute("SELECT image_id, role, digest, size FROM image_blobs "
                      "ORDER BY digest").fetchall()


def count(tx) -> int:
    return tx.execute("SELECT COUNT(*) FROM images").fetchone()[0]


def exclusive_bytes(tx, ids: list[str]) -> int:
    """Bytes of the blobs only these images use (what deleting them frees)."""
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    row = tx.execute(
        f"SELECT COALESCE(SUM(size), 0) FROM (SELECT DISTINCT digest, size FROM image_blobs "
        f"WHERE image_id IN ({marks}) AND digest NOT IN (SELECT digest FROM image_blobs "
        f"WHERE image_id NOT IN ({marks})))", (*ids, *ids)).fetchone()
    return int(row[0])


# -- removing -----------------------------------------------------------------------
def _derived_from(tx, image_id: str) -> list[ImageRecord]:
    # Image ids are unique 32-digit hex: quoted, they appear in a record's JSON only as
    # its own id, its source_id or one of its operand_ids.
    return _select(tx, "id != ? AND kind = 'derived' AND (source_id = ? OR record LIKE ?)",
                   (image_id, image_id, f'%"{image_id}"%'), "ORDER BY created_at, id")


def _remove_row(tx, record: ImageRecord) -> None:
    tx.execute("DELETE FROM images WHERE id = ?", (record.id,))
    instance_headers.forget(tx, record.id)
    at = time.time()
    for tier, counted in tx.execute(
            "SELECT tier, COALESCE(SUM(delta_bytes), 0) FROM storage_ledger WHERE "
            "image_id = ? GROUP BY tier ORDER BY tier", (record.id,)).fetchall():
        meter(tx, record.owner, at, -counted, record.id, tier)


def delete(tx, image_id: str, owner: str | None) -> list[ImageRecord]:
    """Remove the row and (transitively) every image derived from it (its source or an
    operand), with their blob references: the records removed, the image first; empty
    when it was not found. In one write transaction, no derived image outlives it."""
    record = get(tx, image_id, owner)
    if record is None:
        return []
    gone, todo = [], [record]
    while todo:
        r = todo.pop(0)
        if any(g.id == r.id for g in gone):
            continue
        gone.append(r)
        todo.extend(_derived_from(tx, r.id))
    for r in gone:
        _remove_row(tx, r)
    return gone


def delete_many(tx, image_ids: Iterable[str], owner: str | None) -> list[ImageRecord]:
    """:func:`delete` of each image, in one write transaction; an id already removed (not
    found, or derived from one before it) removes nothing."""
    return [r for image_id in image_ids for r in delete(tx, image_id, owner)]


def release(tx, digests: Iterable[str], remove: Callable[[str], int]) -> tuple[int, int]:
    """Remove each blob no row refers to any more (write transaction); (bytes freed,
    blobs removed)."""
    freed = removed = 0
    for digest in sorted(set(digests)):
        used = tx.execute("SELECT 1 FROM image_blobs WHERE digest = ? LIMIT 1",
                          (digest,)).fetchone()
        if not used:
            tx.execute("DELETE FROM blob_tiers WHERE digest = ?", (digest,))
            size = remove(digest)
            freed += size
            removed += 1 if size else 0
    return freed, removed


def sweep(tx, present: Callable[[], Iterable[str]], remove: Callable[[str], int]) -> int:
    """Remove blob files no row refers to (left by a write that was interrupted), in a
    write transaction; how many."""
    used = {r[0] for r in tx.execute("SELECT DISTINCT digest FROM image_blobs")}
    orphans = [d for d in present() if d not in used]
    for digest in orphans:
        remove(digest)
    return len(orphans)


# -- backup -------------------------------------------------------------------------
def backup(tx, dest: Path) -> None:
    """Copy the whole catalog file as one snapshot to ``dest`` (``tx``: the connection,
    outside a transaction)."""
    target = sqlite3.connect(dest, isolation_level=None)
    try:
        tx.backup(target)            # one step: a consistent snapshot of every table
        target.execute("PRAGMA journal_mode=WAL")
    finally:
        target.close()


class ImageCatalog(TierLedger, Store):
    """The image rows of one data directory's catalog file: a facade over this module's
    functions (and image_tiers.py's, :class:`TierLedger`), built on the server's shared
    Database or on a data directory. Reads run off the event loop; writes join the
    Database's group commit."""

    TABLES = (create, instance_headers.create)

    def __init__(self, data_dir):
        super().__init__(data_dir)
        if self.db.run(backfill_needed):
            self.db.transaction(backfill)

    async def add(self, record: ImageRecord, install: Callable[[], None],
                  field: str = "header.image") -> tuple[ImageRecord, bool]:
        """:func:`add`: the stored record and whether it existed."""
        return await self.db.write(add, record, install, field)

    async def add_blob(self, image_id: str, blob: BlobRef, install: Callable[[], None], *,
                       field: str | None = None) -> bool:
        """:func:`add_blob`: False when the image is gone."""
        return await self.db.write(add_blob, image_id, blob, install, field)

    async def get(self, image_id: str, owner: str | None) -> ImageRecord | None:
        """The image, when it exists and (unless ``owner`` is None) belongs to ``owner``."""
        return await self.db.read(get, image_id, owner)

    async def by_identity(self, owner: str, identity: str) -> ImageRecord | None:
        return await self.db.read(by_identity, owner, identity)

    async def by_derivation(self, owner: str, key: str) -> ImageRecord | None:
        return await self.db.read(by_derivation, owner, key)

    async def find(self, f: FindFilter, *, owner: str, limit: int,
                   after: tuple[float, str] | None = None) -> tuple[list[ImageRecord], str]:
        """One page of ``owner``'s images matching ``f``, oldest first, and the next token."""
        return await self.db.read(find, f, owner, limit, after)

    async def expired(self, now: float) -> list[ImageRecord]:
        return await self.db.read(expired, now)

    async def blob_rows(self) -> list[tuple]:
        """(image id, role, digest, size) of every blob reference."""
        return await self.db.read(blob_rows)

    async def count(self) -> int:
        return await self.db.read(count)

    async def exclusive_bytes(self, ids: list[str]) -> int:
        return await self.db.read(exclusive_bytes, ids)

    async def all_images(self) -> list[ImageRecord]:
        """Every image of every subscriber, oldest first."""
        return await self.db.read(all_images)

    async def delete(self, image_id: str, owner: str | None) -> list[ImageRecord]:
        """:func:`delete`: the records removed, the image first; empty when not found."""
        return await self.db.write(delete, image_id, owner)

    async def delete_many(self, image_ids: Iterable[str], owner: str | None
                          ) -> list[ImageRecord]:
        """:func:`delete_many`: every record removed."""
        return await self.db.write(delete_many, list(image_ids), owner)

    async def release(self, digests: Iterable[str], remove: Callable[[str], int]
                      ) -> tuple[int, int]:
        """Remove each blob no row refers to any more; (bytes freed, blobs removed)."""
        return await self.db.write(release, list(digests), remove)

    async def sweep(self, present: Callable[[], Iterable[str]],
                    remove: Callable[[str], int]) -> int:
        """Remove blob files no row refers to (left by a write that was interrupted)."""
        return await self.db.write(sweep, present, remove)

    async def backup(self, dest: Path) -> None:
        """Copy the whole catalog file (images, jobs, usage) as one snapshot to ``dest``."""
        await self.db.read(backup, Path(dest))
