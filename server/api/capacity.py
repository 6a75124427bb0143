"""The Capacity servicer: translation only. Allocations (admin) and storage usage."""

from __future__ import annotations

from medcompute.proto.v1 import capacity_pb2, capacity_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.billing.service import scope
from medcompute.server.storage.keys import check_subscriber

__all__ = ["CapacityServicer"]


def _storage_message(name: str, allocated: int | None, used: int, tiers: dict
                     ) -> capacity_pb2.SubscriberStorage:
    msg = capacity_pb2.SubscriberStorage(
        subscriber=name, used_bytes=used,
        tiers=[capacity_pb2.TierStorage(tier=t, used_bytes=n) for t, n in sorted(tiers.items())])
    if allocated is not None:
        msg.allocated_bytes = allocated
    return msg


class CapacityServicer(capacity_pb2_grpc.CapacityServiceServicer):
    def __init__(self, catalog, guard: Guard):
        self.catalog = catalog            # ImageCatalog
        self.guard = guard

    @rpc("capacity.set", "admin")
    async def SetCapacity(self, request, context, call):
        subscriber = check_subscriber(request.subscriber, "subscriber")
        call.object_id = subscriber
        allocated = request.allocated_bytes if request.HasField("allocated_bytes") else None
        await self.catalog.set_capacity(subscriber, allocated)
        [row] = await self.catalog.storage(subscriber)
        return capacity_pb2.SetCapacityResponse(storage=_storage_message(*row))

    @rpc("capacity.usage", ("store", "receive", "process", "admin"))
    async def GetStorageUsage(self, request, context, call):
        who = scope(call.principal, request.subscriber, request.all_subscribers)
        rows = await self.catalog.storage(who)
        return capacity_pb2.GetStorageUsageResponse(
            subscribers=[_storage_message(*row) for row in rows])
