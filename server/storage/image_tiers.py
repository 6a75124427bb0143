"""The storage tiers and capacity in the image catalog: which tier each blob file is in,
moving its bytes between tiers in the storage ledger, and usage per tier.

A mixin of ``ImageCatalog`` (same file, connection, lock and transactions; see
``image_catalog``). A blob with no ``blob_tiers`` row is hot.
"""

from __future__ import annotations

import time

from medcompute.server.storage import capacity

__all__ = ["TierLedger", "LOCATIONS"]

#: Where a blob of each tier has its file(s): "both" keeps a copy on each (and is metered
#: on each).
LOCATIONS = {"hot": frozenset({"hot"}), "cold": frozenset({"cold"}),
             "both": frozenset({"hot", "cold"})}


class TierLedger:
    """Tier and capacity statements of the image catalog (mixed into ImageCatalog)."""

    def _set_capacity(self, subscriber: str, allocated_bytes: int | None) -> None:
        self._transaction(capacity.set_allocation, self._db, subscriber, allocated_bytes)

    async def set_capacity(self, subscriber: str, allocated_bytes: int | None) -> None:
        """Allocate ``subscriber`` this many bytes (None: unlimited)."""
        await self._call(self._set_capacity, subscriber, allocated_bytes)

    def _storage(self, subscriber: str | None) -> list[tuple[str, int | None, int, dict]]:
        allocations = capacity.allocations(self._db)
        used = self._stored_bytes_now(subscriber)
        names = sorted(set(used) | (set(allocations) if subscriber is None else set()))
        tiers: dict[str, dict[str, int]] = {}
        for owner, tier, n in self._db.execute(
                "SELECT i.owner, COALESCE(t.tier, 'hot'), SUM(b.size) FROM image_blobs b "
                "JOIN images i ON i.id = b.image_id LEFT JOIN blob_tiers t ON "
                "t.digest = b.digest GROUP BY 1, 2"):
            for where in LOCATIONS[tier]:
                mine = tiers.setdefault(owner, {})
                mine[where] = mine.get(where, 0) + int(n)
        return [(name, allocations.get(name), used.get(name, 0), tiers.get(name, {}))
                for name in names]

    async def storage(self, subscriber: str | None) -> list[tuple[str, int | None, int, dict]]:
        """(subscriber, allocated bytes or None, used bytes, used bytes per tier) of one
        subscriber or (None) of every one with an allocation or a ledger entry."""
        return await self._call(self._storage, subscriber)

    def _tier(self, digest: str) -> str:
        row = self._db.execute("SELECT tier FROM blob_tiers WHERE digest = ?",
                               (digest,)).fetchone()
        return row[0] if row else "hot"

    def tier(self, digest: str) -> str:
        """The tier the catalog puts a blob file in ("hot" unless moved)."""
        return self._run(self._tier, digest)

    async def atier(self, digest: str) -> str:
        return await self._call(self._tier, digest)

    def _switch_tier(self, digest: str, tier: str) -> bool:
        """Put ``digest`` in ``tier``, moving its bytes in the ledger of every image that
        uses it; False (nothing changed) when no image uses it any more."""
        return self._transaction(self._switch_step, digest, tier)

    def _switch_step(self, digest: str, tier: str) -> bool:
        users = self._db.execute(
            "SELECT b.image_id, i.owner, b.size FROM image_blobs b JOIN images i ON "
            "i.id = b.image_id WHERE b.digest = ? ORDER BY b.image_id", (digest,)).fetchall()
        was = self._tier(digest)
        if not users or was == tier:
            return bool(users)
        at = time.time()
        before, after = LOCATIONS[was], LOCATIONS[tier]
        for image_id, owner, size in users:
            for gone in sorted(before - after):
                self._meter(owner, at, -size, image_id, gone)
            for added in sorted(after - before):
                self._meter(owner, at, size, image_id, added)
        if tier == "hot":
            self._db.execute("DELETE FROM blob_tiers WHERE digest = ?", (digest,))
        else:
            self._db.execute("INSERT OR REPLACE INTO blob_tiers (digest, tier) VALUES "
                             "(?, ?)", (digest, tier))
        return True

    async def switch_tier(self, digest: str, tier: str) -> bool:
        return await self._call(self._switch_tier, digest, tier)

    def _tiers(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT digest, tier FROM blob_tiers").fetchall())

    async def tiers(self) -> dict[str, str]:
        """Every blob that is not hot, and its tier."""
        return await self._call(self._tiers)
