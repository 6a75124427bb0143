"""Hard copy by image id: a stored image printed on one of the caller's DICOM nodes.

The caller names a stored image and a printer (a node it registered, as for pushes) with
the format information; :func:`films.check_options` checks it once, the image's voxels are
read from the store, :func:`films.pages` composes the sheets and :func:`films.send`
prints them over Basic Grayscale Print Management. Every request is a print job row with
the printer's status, the job's status and the sheets printed (the metered quantity);
a printer that could not print is UNAVAILABLE with the reason, the row kept.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from medcompute.server.dicomnet import films
from medcompute.server.errors import FailedPrecondition, NotFound, Unavailable, shown_id
from medcompute.server.storage import prints as print_table
from medcompute.server.storage.blobs import read_voxels
from medcompute.server.storage.db import Database
from medcompute.server.storage.prints import PrintBook, PrintJob

__all__ = ["Printing"]


class Printing:
    """``store``: the ImageStore; ``nodes``: the PushBook (the callers' DICOM nodes)."""

    def __init__(self, db: Database, store, nodes, *, own_ae: str, timeout: float = 30.0):
        self.book = PrintBook(db)
        self.db = db
        self.store = store
        self.nodes = nodes
        self.own_ae = own_ae
        self.timeout = timeout

    def close(self) -> None:
        self.book.close()

    async def print_image(self, subscriber: str, image_id: str, printer: str,
                          options: films.PrintOptions) -> PrintJob:
        record = await self.store.get(image_id, owner=subscriber)
        o = films.check_options(options, tuple(record.shape))
        node = await self.nodes.node(subscriber, printer)
        if node is None:
            raise NotFound(f"no DICOM node {shown_id(printer)}; register the printer as a "
                           "node first (`medcompute dicom node add`)", "printer")
        if node.tls is not None:
            raise FailedPrecondition("printing over DICOM TLS is not supported yet; register "
                                     "the printer without TLS", "printer")
        path = self.store.present(record.blob("voxels"))     # every stored image has them
        volume = await asyncio.to_thread(read_voxels, path)
        sheets = films.pages(volume, o)
        sent = await asyncio.to_thread(films.send, sheets, o, host=node.host, port=node.port,
                                       called_ae=node.ae_title, own_ae=self.own_ae,
                                       timeout=self.timeout)
        job = PrintJob(uuid.uuid4().hex, subscriber, image_id, printer, o.display_format,
                       o.film_size, o.orientation, o.copies, o.bits, o.slices, o.mip,
                       sent.status, sent.reason, sent.printer_status,
                       sent.printer_status_info, sent.sheets, time.time(),
                       sent.film_session_uid)
        await self.db.write(print_table.add, job)
        if sent.status != "DONE":
            raise Unavailable(f"print job {job.job_id}: {sent.reason}")
        return job

    async def jobs(self, subscriber: str) -> list[PrintJob]:
        return await self.db.read(print_table.jobs, subscriber)

