"""The DicomService: calling AE titles and routing rules (admin role), and a
subscriber's received series. Translation only."""

from __future__ import annotations

from medcompute.proto.v1 import dicom_pb2, dicom_pb2_grpc
from medcompute.server.dicomnet.registry import CallingAE, NodeRegistry
from medcompute.server.dicomnet.routing import RuleBook
from medcompute.server.guard import Guard, rpc

__all__ = ["DicomServicer"]

_STATES = {"receiving": dicom_pb2.SERIES_STATE_RECEIVING,
           "complete": dicom_pb2.SERIES_STATE_COMPLETE,
           "failed": dicom_pb2.SERIES_STATE_FAILED}


def _ae(ae: CallingAE) -> dicom_pb2.CallingAe:
    return dicom_pb2.CallingAe(ae_title=ae.ae_title, subscriber=ae.subscriber, host=ae.host,
                               created_at=ae.created_at)


class DicomServicer(dicom_pb2_grpc.DicomServiceServicer):
    def __init__(self, guard: Guard, registry: NodeRegistry, rules: RuleBook):
        self.guard = guard
        self.registry = registry
        self.rules = rules

    def close(self) -> None:
        self.registry.close()
        self.rules.close()

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
        rule = await self.rules.create(request.rule)
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
