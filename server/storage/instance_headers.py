"""The DICOM attributes of each stored instance, as DICOM JSON, for QIDO-RS and WADO-RS
metadata (dicomweb/index.py): written once per stored image, the first time its headers
are read from its files, so that after a restart a query or a metadata request reads the
catalog, not the files.

One row per file of a stored image (``image_id``, its place among the files): the
attributes without the pixel data, and without large binary values (bulk data: written
as a bulk data URI marker, see dicomweb/index.py). Images never change once stored, so a
row never changes either (it goes with its image's catalog row, images.py); a second
writer of the same image (two front ends) changes nothing (ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

from medcompute.server.storage.db import Store, schema, table

__all__ = ["HEADER_SCHEMA", "InstanceHeaders", "forget", "headers_of", "put_headers"]

HEADER_SCHEMA = """
CREATE TABLE IF NOT EXISTS instance_header (
    image_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    header   TEXT NOT NULL,
    PRIMARY KEY (image_id, position)
);
"""

create = table(schema(HEADER_SCHEMA))

_CHUNK = 500


def put_headers(tx, image_id: str, headers: list[str], first: int = 0) -> None:
    """The DICOM JSON texts of ``image_id``'s files from position ``first`` on."""
    tx.executemany("INSERT INTO instance_header (image_id, position, header) VALUES (?, ?, ?)"
                   " ON CONFLICT (image_id, position) DO NOTHING",
                   [(image_id, first + k, h) for k, h in enumerate(headers)])


def forget(tx, image_id: str) -> None:
    """The rows of an image removed from the catalog (images.py, in the same transaction)."""
    tx.execute("DELETE FROM instance_header WHERE image_id = ?", (image_id,))


def headers_of(tx, image_ids: list[str], first_only: bool = False) -> dict[str, list[str]]:
    """Per image of ``image_ids`` that has rows: its headers in file order (only the first
    file's with ``first_only``)."""
    found: dict[str, list[str]] = {}
    for start in range(0, len(image_ids), _CHUNK):
        chunk = image_ids[start:start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        only = " AND position = 0" if first_only else ""
        for image_id, header in tx.execute(
                f"SELECT image_id, header FROM instance_header WHERE image_id IN ({marks})"
                f"{only} ORDER BY image_id, position", chunk):
            found.setdefault(image_id, []).append(header)
    return found


class InstanceHeaders(Store):
    """The stored instances' DICOM JSON in the catalog: a facade over :func:`put_headers`
    and :func:`headers_of`."""

    TABLES = (create,)

    async def put(self, image_id: str, headers: list[str], first: int = 0) -> None:
        await self.db.write(put_headers, image_id, headers, first)

    async def get(self, image_ids: list[str], first_only: bool = False
                  ) -> dict[str, list[str]]:
        return await self.db.read(headers_of, list(image_ids), first_only)
