"""Looking after the image store: verify every blob, back it up while it serves, purge
what has expired. Functions of an :class:`~medcompute.server.store.images.ImageStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from medcompute.server.errors import FailedPrecondition, Internal, InvalidArgument
from medcompute.server.storage import adoption, image_tiers
from medcompute.server.storage.blobs import BlobStore, file_digest, fsync_dir
from medcompute.server.storage.images import ImageCatalog
from medcompute.server.store.images import ImageStore

__all__ = ["VerifyReport", "BackupReport", "PurgeReport", "verify", "backup", "purge", "adopt",
           "maintain"]

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    images: int = 0
    blobs: int = 0
    bytes: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # image, blob, what
    unreferenced: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class BackupReport:
    destination: str
    images: int
    blobs: int
    bytes: int


@dataclass
class PurgeReport:
    image_ids: list[str]
    freed_bytes: int
    blobs_removed: int


def _check_blobs(blobs: BlobStore, rows: list[tuple]) -> VerifyReport:
    report = VerifyReport()
    by_digest: dict[str, tuple[int, list[str]]] = {}
    for image_id, _role, digest, size, *_ in rows:
        by_digest.setdefault(digest, (size, []))[1].append(image_id)
    for digest, (size, images) in by_digest.items():
        path = blobs.path(digest)
        report.blobs += 1
        try:
            actual, length = file_digest(path)
        except FileNotFoundError:
            problem = "missing"
        else:
            report.bytes += length
            problem = ("" if (actual, length) == (digest, size) else
                       f"size {length} instead of {size}" if length != size else
                       "checksum mismatch: the file's SHA-256 is not its name")
        if problem:
            report.problems.extend((image_id, digest, problem) for image_id in images)
    report.unreferenced = sum(1 for d in blobs.digests() if d not in by_digest)
    return report


async def verify(store: ImageStore) -> VerifyReport:
    """Read every blob back and compare it with its SHA-256 and size."""
    rows = await store.catalog.blob_rows()
    report = await asyncio.to_thread(_check_blobs, store.blobs, rows)
    report.images = await store.catalog.count()
    return report


def _copy_blob(source: Path, target_blobs: BlobStore, digest: str) -> int:
    """Copy one blob atomically into another blob folder, checking it on the way."""
    tmp = target_blobs.new_tmp()
    h = hashlib.sha256()
    try:
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            while block := src.read(1 << 22):
                h.update(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        if h.hexdigest() != digest:
            raise Internal(f"blob {digest} does not match its checksum; run `medcompute store "
                           "verify` and restore it from a backup")
        target_blobs.install(tmp, digest)
        return source.stat().st_size
    finally:
        tmp.unlink(missing_ok=True)


def _copy_blobs(store: ImageStore, dest: Path) -> tuple[int, int, int]:
    catalog = dest / ImageCatalog.FILENAME
    db = sqlite3.connect(catalog)
    try:
        digests = [r[0] for r in db.execute("SELECT DISTINCT digest FROM image_blobs")]
        images = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    finally:
        db.close()
    target = BlobStore(dest / "blobs")
    total = 0
    for digest in digests:
        source = store.blobs.path(digest)
        if not source.exists():
            raise Internal(f"blob {digest} went missing during the backup; run `medcompute store "
                           "verify`, then back up again")
        total += _copy_blob(source, target, digest)
    target.tmp.rmdir()
    for folder in (target.root, dest):
        fsync_dir(folder)
    _all_hot(dest)
    return images, len(digests), total


def _all_hot(dest: Path) -> None:
    """The copy keeps every blob in its own (hot) folder: its catalog says so, and its
    ledger moves the cold tier's bytes to hot as of now."""
    def all_hot(tx) -> None:
        for digest in image_tiers.tiers(tx):
            image_tiers.switch_tier(tx, digest, "hot")

    copy = ImageCatalog(dest)
    try:
        copy.db.transaction(all_hot)
    finally:
        copy.close()


def _destination(store: ImageStore, destination: str) -> tuple[Path, bool]:
    """The backup's folder, checked and made: (its path, whether it was made here)."""
    dest = Path(destination)
    if not destination or not dest.is_absolute():
        raise InvalidArgument("expected an absolute path on the server's host", "destination")
    try:
        data = Path(store.config.data_dir).resolve()
        if dest.resolve() == data or data in dest.resolve().parents:
            raise InvalidArgument("the backup must be outside the data directory",
                                  "destination")
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise FailedPrecondition("exists and is not an empty folder; choose a new one",
                                     "destination")
        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:     # /proc/x, a name too long, a read-only file system ...
        raise FailedPrecondition(f"cannot create the folder here ({exc.strerror}); choose "
                                 "a writable place", "destination") from None
    return dest, created


async def backup(store: ImageStore, destination: str) -> BackupReport:
    """A consistent copy of the catalog and every blob it refers to, taken while serving.

    The catalog is copied as one SQLite snapshot; blobs are immutable, and none is
    removed while a backup runs (deletions wait for it), so every blob the snapshot
    names is copied. A server started on the copy serves the same images. Blobs of
    the cold tier are copied into the copy's own blob folder: the copy is hot only.
    """
    dest, created = await asyncio.to_thread(_destination, store, destination)
    store._backups += 1
    try:
        await store.catalog.backup(dest / ImageCatalog.FILENAME)
        images, blobs, total = await asyncio.to_thread(_copy_blobs, store, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            if created:
                shutil.rmtree(dest)
            else:
                for child in dest.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    finally:
        store._backups -= 1
        if not store._backups and store._deferred:
            deferred, store._deferred = store._deferred, set()
            await asyncio.shield(store.catalog.release(deferred, store.blobs.remove))
    log.info("store: backed up %d image(s), %d blob(s), %d bytes", images, blobs, total)
    return BackupReport(str(dest), images, blobs, total)


async def purge(store: ImageStore, *, now: float | None = None, dry_run: bool = False
                ) -> PurgeReport:
    """Delete every image whose retention period has passed."""
    expired = await store.catalog.expired(time.time() if now is None else now)
    ids = [r.id for r in expired]
    if dry_run:
        return PurgeReport(ids, await store.catalog.exclusive_bytes(ids), 0)
    refs = []
    deleted = []
    for record in expired:
        for gone in await store.catalog.delete(record.id, None):   # with what derives from it
            deleted.append(gone.id)
            refs.extend(gone.blobs)
    freed, removed = await store._release(refs)
    if deleted:
        log.info("store: purged %d expired image(s), freed %d bytes", len(deleted), freed)
    return PurgeReport(deleted, freed, removed)


async def maintain(store: ImageStore, interval: float, *, rounds: int | None = None) -> None:
    """Every ``interval`` seconds: purge expired images, remove stale temporary files,
    apply the tier policy (forever, or ``rounds`` times)."""
    done = 0
    while rounds is None or done < rounds:
        await asyncio.sleep(interval)
        try:
            await purge(store)
            await asyncio.to_thread(store.blobs.clear_stale)
            await store.tiers.apply_policy()
        except Exception:  # keep the loop alive; the next round tries again
            log.exception("store: periodic purge failed")
        done += 1


async def adopt(store: ImageStore, subscriber: str, from_subscriber: str = "") -> list[str]:
    """Hand every image of ``from_subscriber`` (default: the keyless subscriber of the
    server's configuration, ``local``) to ``subscriber``, in one catalog transaction
    (storage/adoption.py); the ids handed over."""
    return await store.catalog.db.write(adoption.adopt, from_subscriber
                                        or store.config.subscriber, subscriber)

