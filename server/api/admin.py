"""The Admin service: API keys, delivery rules and the audit log (admin role).
Translation only."""

from __future__ import annotations

import asyncio

from medcompute.proto.v1 import admin_pb2, admin_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.errors import NotFound
from medcompute.server.storage.audit import AuditLog
from medcompute.server.storage.keys import KeyInfo, KeyStore, check_subscriber

__all__ = ["AdminServicer", "key_message"]


def key_message(info: KeyInfo) -> admin_pb2.KeyInfo:
    return admin_pb2.KeyInfo(key_id=info.key_id, subscriber=info.subscriber, roles=info.roles,
                             created_at=info.created_at, revoked_at=info.revoked_at or 0.0,
                             certificate_sha256=info.certificate_sha256)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, guard: Guard, keys: KeyStore, audit: AuditLog, catalog=None):
        self.guard = guard
        self.keys = keys
        self.audit = audit
        self.catalog = catalog            # delivery rules

    @rpc("keys.create", "admin")
    async def CreateKey(self, request, context, call):
        info, token = await asyncio.to_thread(self.keys.create, request.subscriber,
                                              list(request.roles), request.certificate_sha256)
        call.object_id = info.key_id
        return admin_pb2.CreateKeyResponse(key=key_message(info), api_key=token)

    @rpc("keys.list", "admin")
    async def ListKeys(self, request, context, call):
        keys = await asyncio.to_thread(self.keys.list, request.subscriber)
        return admin_pb2.ListKeysResponse(keys=[key_message(k) for k in keys])

    @rpc("keys.revoke", "admin")
    async def RevokeKey(self, request, context, call):
        call.object_id = request.key_id
        info = await asyncio.to_thread(self.keys.revoke, request.key_id)
        return admin_pb2.RevokeKeyResponse(key=key_message(info))

    @rpc("audit.list", "admin")
    async def ListAudit(self, request, context, call):
        entries = await self.audit.alist(
            since=request.since, until=request.until, subscriber=request.subscriber,
            action=request.action, after_seq=request.after_seq, limit=request.page_size or 100)
        limit = max(1, min(request.page_size or 100, 1000))
        return admin_pb2.ListAuditResponse(
            entries=[admin_pb2.AuditEntry(**e.__dict__) for e in entries],
            next_after_seq=entries[-1].seq if len(entries) == limit else 0)

    @staticmethod
    def _rule(request) -> tuple[str, str]:
        sender = check_subscriber(request.sender, "sender")
        recipient = check_subscriber(request.recipient, "recipient")
        return sender, recipient

    @rpc("deliveries.allow", "admin")
    async def AllowDelivery(self, request, context, call):
        sender, recipient = self._rule(request)
        call.object_id = f"{sender}->{recipient}"
        at = await self.catalog.allow_delivery(sender, recipient)
        return admin_pb2.AllowDeliveryResponse(
            rule=admin_pb2.DeliveryRule(sender=sender, recipient=recipient, created_at=at))

    @rpc("deliveries.disallow", "admin")
    async def DisallowDelivery(self, request, context, call):
        sender, recipient = self._rule(request)
        call.object_id = f"{sender}->{recipient}"
        if not await self.catalog.disallow_delivery(sender, recipient):
            raise NotFound(f"no rule lets {sender!r} deliver to {recipient!r}", "recipient")
        return admin_pb2.DisallowDeliveryResponse(
            rule=admin_pb2.DeliveryRule(sender=sender, recipient=recipient))

    @rpc("deliveries.list", "admin")
    async def ListDeliveryRules(self, request, context, call):
        rules = await self.catalog.delivery_rules(request.sender, request.recipient)
        return admin_pb2.ListDeliveryRulesResponse(rules=[
            admin_pb2.DeliveryRule(sender=s, recipient=r, created_at=at) for s, r, at in rules])
