"""The DicomService: calling AE titles and routing rules (admin role), and a
subscriber's received series. Translation only."""

from __future__ import annotations

from medcompute.proto.v1 import dicom_pb2, dicom_pb2_grpc
from medcompute.server.dicomnet.push import PROOF, Node, PushBook, PushRow
from medcompute.server.dicomnet.registry import CallingAE, NodeRegistry
from medcompute.server.dicomnet.routing import RuleBook
from medcompute.server.guard import Guard, rpc

__all__ = ["DicomServicer"]

_STATES = {"receiving": dicom_pb2.SERIES_STATE_RECEIVING,
           "complete": dicom_pb2.SERIES_STATE_COMPLETE,
           "failed": dicom_pb2.SERIES_STATE_FAILED}


_PUSH_STATES = {"pending": dicom_pb2.PUSH_STATE_PENDING, "sending": dicom_pb2.PUSH_STATE_SENDING,
                "delivered": dicom_pb2.PUSH_STATE_DELIVERED,
                "failed": dicom_pb2.PUSH_STATE_FAILED}


def _node(n: Node) -> dicom_pb2.DicomNode:
    return dicom_pb2.DicomNode(name=n.name, subscriber=n.subscriber, ae_title=n.ae_title,
                               host=n.host, port=n.port, created_at=n.created_at)


def _push(p: PushRow) -> dicom_pb2.Push:
    return dicom_pb2.Push(push_id=p.push_id, job_id=p.job_id, sender=p.sender,
                          recipient=p.recipient, node=p.node, state=_PUSH_STATES[p.state],
                          reason=p.reason, attempts=p.attempts,
                          instances_delivered=p.delivered, proof=PROOF,
                          created_at=p.created_at, updated_at=p.updated_at)


def _ae(ae: CallingAE) -> dicom_pb2.CallingAe:
    return dicom_pb2.CallingAe(ae_title=ae.ae_title, subscriber=ae.subscriber, host=ae.host,
                               created_at=ae.created_at)


class DicomServicer(dicom_pb2_grpc.DicomServiceServicer):
    def __init__(self, guard: Guard, registry: NodeRegistry, rules: RuleBook,
                 pushes: PushBook):
        self.guard = guard
        self.registry = registry
        self.rules = rules
        self.pushes = pushes

    def close(self) -> None:
        self.registry.close()
        self.rules.close()
        self.pushes.close()

    @rpc("dicom.ae.register", "admin")
    async def RegisterCallingAe(self, request, context, call):
        ae = request.calling_ae
        call.object_id = ae.ae_title
        kept = await self.registry.add_ae(ae.ae_title, ae.subscriber, ae.host)
        return dicom_pb2.RegisterCallingAeResponse(calling_ae=_ae(kept))

    @rpc("dicom.ae.delete", "admin")
    async def DeleteCallingAe(self, request, context, call):
        call.object_id = request.ae_title
        await self.registry.remove_ae(request.ae_title)
        return dicom_pb2.DeleteCallingAeResponse()

    @rpc("dicom.ae.list", "admin")
    async def ListCallingAes(self, request, context, call):
        aes = await self.registry.list_aes(request.subscriber)
        return dicom_pb2.ListCallingAesResponse(calling_aes=[_ae(a) for a in aes])

    @rpc("dicom.rules.create", "admin")
    async def CreateRoutingRule(self, request, context, call):
        rule = await self.rules.create(request.rule, self.pushes)
        call.object_id = rule.rule_id
        return dicom_pb2.CreateRoutingRuleResponse(rule=rule)

    @rpc("dicom.rules.delete", "admin")
    async def DeleteRoutingRule(self, request, context, call):
        call.object_id = request.rule_id
        await self.rules.delete(request.rule_id)
        return dicom_pb2.DeleteRoutingRuleResponse()

    @rpc("dicom.rules.list", "admin")
    async def ListRoutingRules(self, request, context, call):
        return dicom_pb2.ListRoutingRulesResponse(rules=await self.rules.list(request.subscriber))

    @rpc("dicom.series.list", ("store", "process"))
    async def ListReceivedSeries(self, request, context, call):
        owner = call.principal.subscriber
        routed = await self.rules.jobs_of(owner)
        return dicom_pb2.ListReceivedSeriesResponse(series=[
            dicom_pb2.ReceivedSeries(
                series_instance_uid=s.series_uid, calling_ae=s.calling_ae,
                called_ae=s.called_ae, state=_STATES[s.state], image_id=s.image_id,
                instances=s.instances, first_received_at=s.first_at,
                last_received_at=s.last_at, reason=s.reason,
                jobs=[dicom_pb2.RoutedJob(rule_id=r, job_id=j)
                      for r, j in routed.get(s.series_uid, [])])
            for s in await self.registry.list_series(owner)])

    @rpc("dicom.nodes.register", "receive")
    async def RegisterNode(self, request, context, call):
        n = request.node
        call.object_id = n.name
        node = await self.pushes.add_node(call.principal.subscriber, n.name, n.ae_title, n.host,
                                          n.port)
        return dicom_pb2.RegisterNodeResponse(node=_node(node))

    @rpc("dicom.nodes.delete", "receive")
    async def DeleteNode(self, request, context, call):
        call.object_id = request.name
        await self.pushes.delete_node(call.principal.subscriber, request.name)
        return dicom_pb2.DeleteNodeResponse()

    @rpc("dicom.nodes.list", "receive")
    async def ListNodes(self, request, context, call):
        nodes = await self.pushes.nodes(call.principal.subscriber)
        return dicom_pb2.ListNodesResponse(nodes=[_node(n) for n in nodes])

    @rpc("dicom.pushes.list", None)
    async def ListPushes(self, request, context, call):
        rows = await self.pushes.pushes(call.principal.subscriber, request.job_id)
        return dicom_pb2.ListPushesResponse(pushes=[_push(p) for p in rows])
