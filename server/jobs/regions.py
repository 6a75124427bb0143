"""Shared-memory regions of same-host clients: who registered which object, by id.

A client on the server's host creates a POSIX shared-memory object and registers it
(RegisterRegion); its Process calls then name their input and output by region id,
offset and length, and the workers read and write the object by name (worker/shm.py):
no pixel travels through gRPC. As Triton's system shared-memory extension.

A region belongs to the subscriber that registered it: any other subscriber naming it,
or an id never given, is answered NOT_FOUND. Registrations live with this server process
(a client registers again after a restart). A registration whose object no longer
exists (its client unlinked it, or died and its resource tracker did) is dropped when it
is next used, and by :meth:`RegionRegistry.sweep`, which the server runs periodically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from dataclasses import dataclass

import numpy as np

from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    shown_id,
)
from medcompute.server.jobs.requests import ProcessRequest, RegionRef
from medcompute.server.worker import shm

__all__ = ["Region", "RegionRegistry", "NOT_ON_THIS_HOST", "sweep_every", "read_into",
           "write_pieces"]

log = logging.getLogger(__name__)

NOT_ON_THIS_HOST = ("the region is not on this server's host: shared memory needs the "
                    "client on the same machine")


@dataclass(frozen=True)
class Region:
    id: str
    subscriber: str
    name: str
    size: int


class RegionRegistry:
    """The registered regions of this server process (see the module's docstring); at
    most ``per_subscriber`` of one subscriber at once (a client holds one per call in
    flight)."""

    def __init__(self, per_subscriber: int = 256):
        self.regions: dict[str, Region] = {}
        self.per_subscriber = per_subscriber

    def register(self, subscriber: str, name: str, size: int) -> Region:
        """Register the object ``name`` of at least ``size`` bytes for ``subscriber``."""
        if not shm.valid_name(name):
            raise InvalidArgument("expected the name of a shared-memory object (1 to 255 "
                                  "characters, no '/' but a leading one)", "name")
        if size <= 0:
            raise InvalidArgument("expected the bytes the client will use, more than 0",
                                  "size")
        actual = shm.size(name)
        if actual is None:
            raise FailedPrecondition(NOT_ON_THIS_HOST, "name")
        if actual < size:
            raise InvalidArgument(f"the shared-memory object holds {actual} bytes, fewer "
                                  f"than the {size} given", "size")
        held = sum(1 for r in self.regions.values() if r.subscriber == subscriber)
        if held >= self.per_subscriber:
            self.sweep()
            held = sum(1 for r in self.regions.values() if r.subscriber == subscriber)
        if held >= self.per_subscriber:
            raise ResourceExhausted(f"this subscriber has {held} regions registered, the "
                                    "most it may; unregister some first")
        region = Region(secrets.token_hex(12), subscriber, name.lstrip("/"), size)
        self.regions[region.id] = region
        return region

    def unregister(self, subscriber: str, region_id: str) -> None:
        self.get(subscriber, region_id, "region_id")
        del self.regions[region_id]

    def get(self, subscriber: str, region_id: str, field: str) -> Region:
        """The subscriber's region ``region_id``; NotFound for an unknown id, another
        subscriber's, or one whose shared-memory object is gone (then dropped)."""
        region = self.regions.get(region_id)
        if region is None or region.subscriber != subscriber:
            raise NotFound(f"no region {shown_id(region_id)} of this subscriber (RegisterRegion "
                           "gives the ids)", field)
        if shm.size(region.name) is None:
            del self.regions[region_id]
            raise NotFound(f"region {shown_id(region_id)}: its shared-memory object no longer "
                           "exists; the registration is dropped", field)
        return region

    def sweep(self) -> int:
        """Drop the registrations whose object no longer exists; how many were dropped."""
        gone = [k for k, r in self.regions.items() if shm.size(r.name) is None]
        for k in gone:
            del self.regions[k]
        return len(gone)

    def resolve(self, request: ProcessRequest, subscriber: str
                ) -> tuple[ProcessRequest, int | None, int | None]:
        """The request with its regions' object names filled in, and the sizes of the
        input's and the output's regions (None where there is none)."""
        sizes = []
        refs = {}
        for name in ("input_region", "output_region"):
            ref: RegionRef | None = getattr(request, name)
            if ref is None:
                sizes.append(None)
                continue
            region = self.get(subscriber, ref.region_id, f"{name}.region_id")
            refs[name] = dataclasses.replace(ref, name=region.name)
            sizes.append(region.size)
        return dataclasses.replace(request, **refs), sizes[0], sizes[1]


async def write_pieces(region: Region, offset: int, length: int, pieces) -> int:
    """Write the byte strings the async iterator ``pieces`` yields, one after the other,
    into ``length`` bytes of ``region`` at ``offset``; how many were written. More than
    ``length`` is the caller's mistake in sizing the part (checked before)."""
    at = 0
    with shm.writable_part(region.name, offset, length) as view:
        async for piece in pieces:
            view[at:at + len(piece)] = piece
            at += len(piece)
    return at


def read_into(ref: RegionRef, out: np.ndarray) -> None:
    """Copy the bytes ``ref`` names (a looked-up region) into ``out`` (as many)."""
    shm.read_into(ref.name, ref.offset, out)


async def sweep_every(registry: RegionRegistry, seconds: float = 10.0) -> None:
    """Run :meth:`RegionRegistry.sweep` every ``seconds``, until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        dropped = registry.sweep()
        if dropped:
            log.info("dropped %d shared-memory region(s) whose object is gone", dropped)
