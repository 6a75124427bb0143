"""The Tier servicer: translation only. Moves between the hot and the cold tier."""

from __future__ import annotations

from medcompute.proto.v1 import tiers_pb2, tiers_pb2_grpc
from medcompute.server.api.guard import Guard, rpc

__all__ = ["TierServicer"]


class TierServicer(tiers_pb2_grpc.TierServiceServicer):
    def __init__(self, store, guard: Guard):
        self.store = store                # ImageStore
        self.guard = guard

    @rpc("tiers.move", "store")
    async def MoveImage(self, request, context, call):
        call.object_id = request.image_id
        r = await self.store.tiers.move(request.image_id, owner=call.principal.subscriber,
                                        target=request.tier)
        call.detail = f"to {request.tier}: {r.blobs} blob(s), {r.bytes} bytes"
        return tiers_pb2.MoveImageResponse(blobs_moved=r.blobs, bytes_moved=r.bytes, tier=r.tier)

    @rpc("tiers.apply", "admin")
    async def ApplyTierPolicy(self, request, context, call):
        r = await self.store.tiers.apply_policy(dry_run=request.dry_run)
        return tiers_pb2.ApplyTierPolicyResponse(image_ids=r.image_ids, blobs=r.blobs,
                                                 bytes=r.bytes)
