"""The storage ledger and storage tiers of the image catalog: what each subscriber keeps
stored over time, which tier each blob file is in, moving its bytes between tiers in the
ledger, and usage per tier and against the allocated capacity.

Functions taking ``tx``, the connection inside the transaction (same file and tables as
images.py, whose schema creates them); :class:`TierLedger` is their facade, mixed into
``ImageCatalog``. ``meter`` writes one ledger row in the caller's transaction, together
with the change it counts. Integrating the ledger over a period gives gigabyte-days. A
blob with no ``blob_tiers`` row is hot.
"""

from __future__ import annotations

import time

from medcompute.server.storage import capacity

__all__ = ["TierLedger", "LOCATIONS", "backfill", "backfill_needed", "gigabyte_days", "meter",
           "storage", "stored_bytes_now", "switch_tier", "tier", "tiers"]

#: Where a blob of each tier has its file(s): "both" keeps a copy on each (and is metered
#: on each).
LOCATIONS = {"hot": frozenset({"hot"}), "cold": frozenset({"cold"}),
             "both": frozenset({"hot", "cold"})}

_GIGABYTE_DAY = 1e9 * 86400


# -- the storage ledger -----------------------------------------------------------------
def meter(tx, subscriber: str, at: float, delta: int, image_id: str,
          tier: str = "hot") -> None:
    """One ledger row; the caller's transaction holds it together with the change."""
    if delta:
        tx.execute("INSERT INTO storage_ledger (subscriber, at, delta_bytes, image_id, tier) "
                   "VALUES (?, ?, ?, ?, ?)", (subscriber, at, int(delta), image_id, tier))


def backfill_needed(tx) -> bool:
    """Whether the catalog was written before the ledger existed (images, no ledger row)."""
    return bool(tx.execute("SELECT NOT EXISTS (SELECT 1 FROM storage_ledger) AND "
                           "EXISTS (SELECT 1 FROM images)").fetchone()[0])


def backfill(tx) -> None:
    """A catalog written before the ledger existed: one row per image, at its creation
    (write transaction; checked again under the write lock: another process may be
    here)."""
    if backfill_needed(tx):
        tx.execute("INSERT INTO storage_ledger (subscriber, at, delta_bytes, image_id) "
                   "SELECT i.owner, i.created_at, SUM(b.size), i.id FROM images i "
                   "JOIN image_blobs b ON b.image_id = i.id GROUP BY i.id "
                   "HAVING SUM(b.size) != 0 ORDER BY i.created_at, i.id")


def gigabyte_days(tx, subscriber: str | None, since: float = 0.0, until: float = 0.0,
                  now: float | None = None, tier: str | None = None) -> dict[str, float]:
    """Stored bytes integrated over [since, until), per subscriber (see
    :meth:`TierLedger.gigabyte_days`); ``tier``: of that tier only."""
    now = time.time() if now is None else now
    end = min(until, now) if until else now
    where, args = "at < ?", [end]
    if subscriber is not None:
        where += " AND subscriber = ?"
        args.append(subscriber)
    if tier is not None:
        where += " AND tier = ?"
        args.append(tier)
    rows = tx.execute(f"SELECT subscriber, at, delta_bytes FROM storage_ledger WHERE "
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


def stored_bytes_now(tx, subscriber: str | None = None) -> dict[str, int]:
    """Bytes each subscriber keeps stored now, by the ledger (None: every subscriber)."""
    where, args = ("WHERE subscriber = ?", (subscriber,)) if subscriber is not None else (
        "", ())
    rows = tx.execute(f"SELECT subscriber, SUM(delta_bytes) FROM storage_ledger "
                      f"{where} GROUP BY subscriber ORDER BY subscriber", args).fetchall()
    found = {name: int(total) for name, total in rows}
    if subscriber is not None:
        found.setdefault(subscriber, 0)
    return found


# -- tiers and capacity -----------------------------------------------------------------
def storage(tx, subscriber: str | None) -> list[tuple[str, int | None, int, dict]]:
    """(subscriber, allocated bytes or None, used bytes, used bytes per tier) of one
    subscriber or (None) of every one with an allocation or a ledger entry."""
    allocations = capacity.allocations(tx)
    used = stored_bytes_now(tx, subscriber)
    names = sorted(set(used) | (set(allocations) if subscriber is None else set()))
    per_tier: dict[str, dict[str, int]] = {}
    for owner, where_is, n in tx.execute(
            "SELECT i.owner, COALESCE(t.tier, 'hot'), SUM(b.size) FROM image_blobs b "
            "JOIN images i ON i.id = b.image_id LEFT JOIN blob_tiers t ON "
            "t.digest = b.digest GROUP BY 1, 2"):
        for where in LOCATIONS[where_is]:
            mine = per_tier.setdefault(owner, {})
            mine[where] = mine.get(where, 0) + int(n)
    return [(name, allocations.get(name), used.get(name, 0), per_tier.get(name, {}))
            for name in names]


def tier(tx, digest: str) -> str:
    """The tier the catalog puts a blob file in ("hot" unless moved)."""
    row = tx.execute("SELECT tier FROM blob_tiers WHERE digest = ?", (digest,)).fetchone()
    return row[0] if row else "hot"


def switch_tier(tx, digest: str, to: str, at: float | None = None) -> bool:
    """Put ``digest`` in tier ``to``, moving its bytes in the ledger of every image that
    uses it at time ``at`` (now by default; write transaction); False (nothing changed)
    when no image uses it any more."""
    users = tx.execute(
        "SELECT b.image_id, i.owner, b.size FROM image_blobs b JOIN images i ON "
        "i.id = b.image_id WHERE b.digest = ? ORDER BY b.image_id", (digest,)).fetchall()
    was = tier(tx, digest)
    if not users or was == to:
        return bool(users)
    at = time.time() if at is None else at
    before, after = LOCATIONS[was], LOCATIONS[to]
    for image_id, owner, size in users:
        for gone in sorted(before - after):
            meter(tx, owner, at, -size, image_id, gone)
        for added in sorted(after - before):
            meter(tx, owner, at, size, image_id, added)
    if to == "hot":
        tx.execute("DELETE FROM blob_tiers WHERE digest = ?", (digest,))
    else:
        tx.execute("INSERT OR REPLACE INTO blob_tiers (digest, tier) VALUES (?, ?)",
                   (digest, to))
    return True


def tiers(tx) -> dict[str, str]:
    """Every blob that is not hot, and its tier."""
    return dict(tx.execute("SELECT digest, tier FROM blob_tiers").fetchall())


class TierLedger:
    """The ledger, tier and capacity methods of ``ImageCatalog`` (a mixin of that facade:
    it uses its ``db``)."""

    async def set_capacity(self, subscriber: str, allocated_bytes: int | None) -> None:
        """Allocate ``subscriber`` this many bytes (None: unlimited)."""
        await self.db.write(capacity.set_allocation, subscriber, allocated_bytes)

    async def storage(self, subscriber: str | None) -> list[tuple[str, int | None, int, dict]]:
        """:func:`storage`."""
        return await self.db.read(storage, subscriber)

    def tier(self, digest: str) -> str:
        """The tier the catalog puts a blob file in ("hot" unless moved)."""
        return self.db.run(tier, digest)

    async def atier(self, digest: str) -> str:
        return await self.db.read(tier, digest)

    async def switch_tier(self, digest: str, to: str) -> bool:
        """:func:`switch_tier`."""
        return await self.db.write(switch_tier, digest, to)

    async def tiers(self) -> dict[str, str]:
        """Every blob that is not hot, and its tier."""
        return await self.db.read(tiers)

    def gigabyte_days(self, subscriber: str | None, since: float = 0.0, until: float = 0.0,
                      *, now: float | None = None) -> dict[str, float]:
        """Stored bytes integrated over [since, until), per subscriber, in gigabyte-days
        (10^9 bytes kept for 24 hours).

        ``subscriber`` None: every subscriber with a ledger entry before the end (always
        included when named). ``since`` 0: from the first entry; ``until`` 0, or any end
        later than ``now`` (default: the current time): up to ``now``, so that time not
        yet passed is never counted.
        """
        return self.db.run(gigabyte_days, subscriber, since, until, now)

    async def agigabyte_days(self, subscriber: str | None, since: float = 0.0,
                             until: float = 0.0, *, now: float | None = None,
                             tier: str | None = None) -> dict[str, float]:
        """:meth:`gigabyte_days`, off the event loop; ``tier``: of that tier only."""
        return await self.db.read(gigabyte_days, subscriber, since, until, now, tier)

    def stored_bytes_now(self, subscriber: str | None = None) -> dict[str, int]:
        """Bytes each subscriber keeps stored now, by the ledger (None: every subscriber)."""
        return self.db.run(stored_bytes_now, subscriber)

    async def astored_bytes_now(self, subscriber: str | None = None) -> dict[str, int]:
        """:meth:`stored_bytes_now`, off the event loop."""
        return await self.db.read(stored_bytes_now, subscriber)
