"""Storage tiers: blobs moved between the hot data directory and a cold one, crash-safe.

Domain code. ``hot`` is the data directory's blob folder, ``cold`` the one under
``--cold-dir`` (another disk or mount). The policy moves the *originals* of an image
(its DICOM files and decoded voxels) and its *lossless* versions to cold once the image
is older than ``--cold-after`` or its study is in one of ``--cold-status``; lossy
versions and previews stay hot, so the purposes that need them stay fast. A read of a
cold blob is served from cold (recorded in the call's audit entry); with
``--recall-on-read``, or a RecallImage call, the image's blobs are moved back.

A move of one blob file goes in steps, each durable before the next:

1. ``copied``: the bytes copied to a temporary file in the target tier, hashed;
2. ``synced``: that file fsynced, renamed into place, its folder fsynced;
3. ``verified``: the target file read back and its SHA-256 checked against the name;
4. ``switched``: the catalog says the blob is in the target tier (one transaction that
   also moves its bytes from one tier to the other in the storage ledger);
5. ``deleted``: the source file removed, its folder fsynced.

Until step 5 the source file is whole, and reads prefer the hot copy while it exists
(``blobs.TieredBlobStore.path``), so a kill at any point leaves every image readable.
At start-up `recover` settles a blob found in both tiers by the catalog: the copy in the
tier the catalog names is kept (checked against its checksum first) and the other one
removed; a temporary file of an interrupted copy is removed like any other.

:data:`step_hook` is the fault-injection seam: a callable given each step's name and the
move's target right after the step (None in the service). The tests set it in a
``medcompute serve`` process of their own (tests/tier_kill.py) to SIGKILL it there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.storage import image_tiers
from medcompute.server.storage.blobs import BlobStore, file_digest, fsync_dir
from medcompute.server.storage.images import ImageRecord
from medcompute.server.store.versions import ROLE_PREFIX

__all__ = ["TierMover", "MoveReport", "STEPS", "step_hook", "moving_roles", "HOT", "COLD",
           "BOTH"]

log = logging.getLogger(__name__)

STEPS = ("copied", "synced", "verified", "switched", "deleted")
#: Called with (step, target tier) right after each step of a move; None in the service.
step_hook: Callable[[str, str], None] | None = None
HOT, COLD, BOTH = "hot", "cold", "both"


def _step(name: str, target: str) -> None:
    if step_hook is not None:
        step_hook(name, target)


def moving_roles(record: ImageRecord, mode: str = "move") -> list[str]:
    """The roles of an image's blobs the policy sends to cold: originals and lossless
    versions (``move``), or every version, lossy ones too (``copy``: kept on both)."""
    roles = []
    for b in record.blobs:
        if b.role in ("dicom", "voxels"):
            roles.append(b.role)
        elif b.role.startswith(ROLE_PREFIX) and (mode == "copy"
                                                 or json.loads(b.info).get("lossless")):
            roles.append(b.role)
    return roles


#: The folders a blob of each catalog tier has its file in.
LOCATIONS = {HOT: (HOT,), COLD: (COLD,), BOTH: (HOT, COLD)}


@dataclass
class MoveReport:
    image_ids: list[str] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    #: Of a move of one image: its tier after the move ("hot", "cold" or "both").
    tier: str = ""


class TierMover:
    """Moves one store's blobs between its tiers (``store.tiers``)."""

    def __init__(self, store):
        self.store = store
        self._lock = asyncio.Lock()
        self._recalls: set[asyncio.Task] = set()
        #: Reads of stored image data since start, by the tier served from (metrics).
        self.reads = {HOT: 0, COLD: 0}

    @property
    def cold_reads(self) -> int:
        return self.reads[COLD]

    def read_from(self, record: ImageRecord, role: str) -> str:
        """Where a read of the image's ``role`` blob is served from; a cold read is
        counted and, with ``recall_on_read``, the image is moved back hot soon."""
        blob = record.blob(role)
        if blob is None or not self.enabled or \
                self.store.blobs.tier_of_file(blob.digest) != COLD:
            self.reads[HOT] += 1
            return HOT
        self.reads[COLD] += 1
        if self.store.config.recall_on_read:
            task = asyncio.get_running_loop().create_task(self._recall(record))
            self._recalls.add(task)
            task.add_done_callback(self._recalls.discard)
        return COLD

    async def _recall(self, record: ImageRecord) -> None:
        try:
            await self.move_image(record, HOT)
        except Exception as exc:  # a recall is an optimisation: the image stays readable
            log.warning("tiers: recalling an image to hot failed (%s)", type(exc).__name__)

    async def wait_recalls(self) -> None:
        """Until the recalls started by reads have ended."""
        while self._recalls:
            await asyncio.gather(*list(self._recalls), return_exceptions=True)

    @property
    def enabled(self) -> bool:
        return self.store.blobs.cold is not None

    def _stores(self, target: str) -> tuple[BlobStore, BlobStore]:
        """(source, destination) of a move to ``target``."""
        blobs = self.store.blobs
        return (blobs.hot, blobs.cold) if target == COLD else (blobs.cold, blobs.hot)

    # -- one blob ---------------------------------------------------------------------
    def _copy(self, digest: str, target: str, move: str | None = None) -> None:
        """Steps 1-3 of a move to ``move`` (default ``target``): the folder of ``target``
        (hot or cold) holds a synced, verified copy."""
        move = move or target
        source, dest = self._stores(target)
        final = dest.path(digest)
        if not final.exists():
            tmp = dest.new_tmp()
            try:
                h = hashlib.sha256()
                with open(source.path(digest), "rb") as src, open(tmp, "xb") as out:
                    while block := src.read(1 << 22):
                        h.update(block)
                        out.write(block)
                    _step("copied", move)
                    out.flush()
                    os.fsync(out.fileno())
                if h.hexdigest() != digest:
                    raise FailedPrecondition(f"the {source.root} copy of blob {digest} does not "
                                             "match its checksum; run `medcompute store "
                                             "verify`", "image_id")
                dest.install(tmp, digest)
            finally:
                tmp.unlink(missing_ok=True)
        _step("synced", move)
        if file_digest(final)[0] != digest:
            final.unlink()
            fsync_dir(final.parent)
            raise FailedPrecondition(f"the copy of blob {digest} in the {target} tier did not "
                                     "read back the same; nothing was moved", "image_id")
        _step("verified", move)

    def _delete_at(self, digest: str, location: str, move: str) -> None:
        folder = self.store.blobs.hot if location == HOT else self.store.blobs.cold
        path = folder.path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)
        _step("deleted", move)

    async def move_blob(self, digest: str, target: str) -> bool:
        """Put one blob file in ``target`` (hot, cold, or both: a copy on each); False when
        it is there already or no image uses it."""
        catalog = self.store.catalog
        was = await catalog.atier(digest)
        if was == target:
            return False
        for location in LOCATIONS[target]:
            if location not in LOCATIONS[was]:
                await asyncio.to_thread(self._copy, digest, location, target)
        if not await catalog.switch_tier(digest, target):
            return False    # deleted meanwhile; the sweep at start-up removes the copy
        _step("switched", target)
        for location in LOCATIONS[was]:
            if location not in LOCATIONS[target]:
                await asyncio.to_thread(self._delete_at, digest, location, target)
        return True

    # -- images -------------------------------------------------------------------------
    async def move_image(self, record: ImageRecord, target: str) -> tuple[int, int]:
        """To cold: move the image's originals and lossless versions there (``--cold-mode
        move``), or copy every version there, keeping the hot files (``copy``); to hot:
        every blob of it back, the cold copies removed. (blobs moved, bytes)."""
        if not self.enabled:
            raise FailedPrecondition("this server has no cold tier (start it with "
                                     "--cold-dir)", "tier")
        if target not in (HOT, COLD):
            raise InvalidArgument(f"expected 'hot' or 'cold', got {target[:16]!r}", "tier")
        mode = self.store.config.cold_mode
        if target == COLD:
            roles = set(moving_roles(record, mode))
            where = BOTH if mode == "copy" else COLD
        else:
            roles, where = {b.role for b in record.blobs}, HOT
        moved = size = 0
        async with self._lock:
            for b in record.blobs:
                if b.role in roles and await self.move_blob(b.digest, where):
                    moved += 1
                    size += b.size
        return moved, size

    async def move(self, image_id: str, *, owner: str, target: str) -> MoveReport:
        """`move_image` of the caller's image ``image_id`` (NotFound otherwise): what was
        moved, and the image's tier after the move (its ``tier`` in the catalog)."""
        record = await self.store.get(image_id, owner=owner)
        moved, size = await self.move_image(record, target)
        record = await self.store.get(image_id, owner=owner)
        return MoveReport([image_id], moved, size, record.tier)

    async def apply_policy(self, *, now: float | None = None, dry_run: bool = False
                           ) -> MoveReport:
        """Move to cold what the policy says: images older than ``cold_after``, or whose
        study's reading status is in ``cold_statuses``."""
        cfg = self.store.config
        report = MoveReport()
        if not self.enabled or (cfg.cold_after is None and not cfg.cold_statuses):
            return report
        now = time.time() if now is None else now
        tiers = await self.store.catalog.tiers()
        statuses = await self.store.studies.all() if cfg.cold_statuses else {}
        for record in await self.store.catalog.all_images():
            old = cfg.cold_after is not None and record.created_at <= now - cfg.cold_after
            status = statuses.get((record.owner, record.metadata.get("study_instance_uid", "")),
                                  "unread")
            if not (old or status in cfg.cold_statuses):
                continue
            hot = [b for b in record.blobs if b.role in moving_roles(record, cfg.cold_mode)
                   and tiers.get(b.digest, HOT) == HOT]
            if not hot:
                continue
            report.image_ids.append(record.id)
            if dry_run:
                report.blobs += len(hot)
                report.bytes += sum(b.size for b in hot)
                continue
            moved, size = await self.move_image(record, COLD)
            report.blobs += moved
            report.bytes += size
        if report.blobs and not dry_run:
            log.info("tiers: moved %d blob(s) of %d image(s), %d bytes, to cold",
                     report.blobs, len(report.image_ids), report.bytes)
        return report

    # -- start-up ---------------------------------------------------------------------
    def recover(self) -> int:
        """Settle every blob an interrupted move left in both tiers; how many."""
        if not self.enabled:
            return 0
        blobs, catalog = self.store.blobs, self.store.catalog
        settled = 0
        for digest in list(blobs.cold.digests()):
            if not blobs.hot_path(digest).exists():
                continue
            keep = catalog.tier(digest)
            if keep == BOTH:             # meant to be on both (--cold-mode copy)
                continue
            kept = blobs.cold.path(digest) if keep == COLD else blobs.hot_path(digest)
            other = blobs.hot_path(digest) if keep == COLD else blobs.cold.path(digest)
            if file_digest(kept)[0] != digest:   # never remove the only good copy
                log.error("tiers: blob %s is damaged in the %s tier; its other copy is kept",
                          digest, keep)
                kept, other = other, kept
                catalog.db.transaction(image_tiers.switch_tier, digest,
                                       HOT if keep == COLD else COLD)
            other.unlink()
            fsync_dir(other.parent)
            settled += 1
        if settled:
            log.info("tiers: settled %d blob(s) an interrupted move left in both tiers",
                     settled)
        return settled
