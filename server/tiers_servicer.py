"""The Tier servicer: translation only. Moves between the hot and the cold tier."""

from __future__ import annotations

from medcompute.proto.v1 import tiers_pb2, tiers_pb2_grpc
from medcompute.server.guard import Guard, rpc

__all__ = ["TierServicer"]


class TierServicer(tiers_pb2_grpc.TierServiceServicer):
    def __init__(self, store, guard: Guard, statuses=None):
        self.store = store                # ImageStore
        self.guard = guard
        self.statuses = statuses          # async () -> {study uid: status}, or None

    @rpc("tiers.move", "store")
    async def MoveImage(self, request, context, call):
        call.object_id = request.image_id
        record = await self.store.get(request.image_id, owner=call.principal.subscriber)
        moved, size = await self.store.tiers.move_image(record, request.tier)
        call.detail = f"to {request.tier}: {moved} blob(s), {size} bytes"
        record = await self.store.get(request.image_id, owner=call.principal.subscriber)
        return tiers_pb2.MoveImageResponse(blobs_moved=moved, bytes_moved=size, tier=record.tier)

    @rpc("tiers.apply", "admin")
    async def ApplyTierPolicy(self, request, context, call):
        statuses = await self.statuses() if self.statuses is not None else None
        r = await self.store.tiers.apply_policy(dry_run=request.dry_run, statuses=statuses)
        return tiers_pb2.ApplyTierPolicyResponse(image_ids=r.image_ids, blobs=r.blobs,
                                                 bytes=r.bytes)
