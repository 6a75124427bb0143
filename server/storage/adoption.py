"""Handing the images of one subscriber to another, in one transaction: what an
administrator does with the images registered while the data directory had no key (the
subscriber ``local``) once keys exist (``medcompute store adopt SUBSCRIBER --data-dir``).

Each image's owner (its catalog column and its record), its bytes in the storage ledger
(a row taking them from the old owner and one giving them to the new, per tier, at the
same instant, so gigabyte-days before the hand-over stay the old owner's) and its
studies' reading statuses change together, after the new owner's allocated capacity is
checked. Blobs are content-addressed and shared: they are not touched.
"""

from __future__ import annotations

import json
import time

from medcompute.server.errors import FailedPrecondition, InvalidArgument
from medcompute.server.storage import audit, capacity
from medcompute.server.storage.db import Store
from medcompute.server.storage.image_tiers import meter
from medcompute.server.storage.images import create as create_images
from medcompute.server.storage.keys import check_subscriber
from medcompute.server.storage.studies import create as create_studies

__all__ = ["adopt", "Adoption"]


def adopt(tx, from_owner: str, to_owner: str, at: float | None = None) -> list[str]:
    """Give every image of ``from_owner`` to ``to_owner`` (write transaction); the ids
    handed over, oldest first. Refused, with nothing changed, when ``to_owner`` already
    holds one of the same instances (the catalog keeps one per owner) or its allocated
    capacity would be passed."""
    check_subscriber(to_owner)
    if to_owner == from_owner:
        raise InvalidArgument(f"the images already belong to {to_owner!r}", "subscriber")
    at = time.time() if at is None else at
    rows = tx.execute("SELECT id, identity, record FROM images WHERE owner = ? "
                      "ORDER BY created_at, id", (from_owner,)).fetchall()
    if not rows:
        return []
    held = [image_id for image_id, identity, _ in rows if tx.execute(
        "SELECT 1 FROM images WHERE owner = ? AND identity = ?",
        (to_owner, identity)).fetchone()]
    if held:
        raise FailedPrecondition(
            f"{to_owner!r} already holds {len(held)} of the {len(rows)} image(s) (the same "
            f"instance or result), e.g. {held[0]}; delete one of each pair first, nothing "
            "was handed over", "subscriber")
    ids = [image_id for image_id, _, _ in rows]
    marks = ",".join("?" * len(ids))
    tiers = tx.execute(f"SELECT image_id, tier, SUM(delta_bytes) FROM storage_ledger WHERE "
                       f"subscriber = ? AND image_id IN ({marks}) GROUP BY image_id, tier",
                       (from_owner, *ids)).fetchall()
    capacity.check(tx, to_owner, sum(n for _, _, n in tiers), "subscriber")
    for image_id, _, text in rows:
        record = json.loads(text)
        record["owner"] = to_owner
        tx.execute("UPDATE images SET owner = ?, record = ? WHERE id = ?",
                   (to_owner, json.dumps(record, sort_keys=True), image_id))
    for image_id, tier, n in tiers:
        meter(tx, from_owner, at, -n, image_id, tier)
        meter(tx, to_owner, at, n, image_id, tier)
    # A study whose status the new owner has already keeps that one (and the old row).
    tx.execute("UPDATE study_status SET owner = ? WHERE owner = ? AND study_uid IN "
               f"(SELECT study_uid FROM images WHERE id IN ({marks})) AND NOT EXISTS "
               "(SELECT 1 FROM study_status mine WHERE mine.owner = ? "
               "AND mine.study_uid = study_status.study_uid)",
               (to_owner, from_owner, *ids, to_owner))
    return ids


def _adopt_audited(tx, from_owner: str, to_owner: str) -> list[str]:
    ids = adopt(tx, from_owner, to_owner)
    audit.add(tx, audit.entry(to_owner, "store.adopt", "", "ok",
                              f"{len(ids)} image(s) of {from_owner} handed to {to_owner}"))
    return ids


class Adoption(Store):
    """:func:`adopt` on a data directory's catalog (the offline command line), with its
    audit entry in the same transaction."""

    TABLES = (create_images, create_studies, audit.create)

    def adopt(self, from_owner: str, to_owner: str) -> list[str]:
        return self.db.transaction(_adopt_audited, from_owner, to_owner)
