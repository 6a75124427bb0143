"""The DicomService: calling AE titles and routing rules (admin role), and a
subscriber's received series. Translation only."""

from __future__ import annotations

import dataclasses

from medcompute.proto.v1 import dicom_pb2, dicom_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.api.requests import Fields, process_header, process_request
from medcompute.server.dicomnet.collect import Query, Source, SourceBook
from medcompute.server.dicomnet.offload import Offload
from medcompute.server.dicomnet.push import Node, PushBook, PushRow, proof_of
from medcompute.server.dicomnet.registry import CallingAE, NodeRegistry
from medcompute.server.dicomnet.routing import Rule, RuleBook
from medcompute.server.dicomnet.tls import Tls
from medcompute.server.errors import FailedPrecondition, InvalidArgument

__all__ = ["DicomServicer"]

_STATES = {"receiving": dicom_pb2.SERIES_STATE_RECEIVING,
           "complete": dicom_pb2.SERIES_STATE_COMPLETE,
           "failed": dicom_pb2.SERIES_STATE_FAILED}


_PUSH_STATES = {"pending": dicom_pb2.PUSH_STATE_PENDING, "sending": dicom_pb2.PUSH_STATE_SENDING,
                "delivered": dicom_pb2.PUSH_STATE_DELIVERED,
                "failed": dicom_pb2.PUSH_STATE_FAILED}


def _tls_out(t: Tls | None) -> dicom_pb2.DicomTls | None:
    if t is None:
        return None
    return dicom_pb2.DicomTls(ca_pem=t.ca_pem, client_cert_pem=t.cert_pem,
                              server_name=t.server_name, client_key_set=bool(t.key_pem))


def _tls_in(holder) -> Tls | None:
    if not holder.HasField("tls"):
        return None
    t = holder.tls
    return Tls(t.ca_pem, t.client_cert_pem, t.client_key_pem, t.server_name)


def _node(n: Node) -> dicom_pb2.DicomNode:
    return dicom_pb2.DicomNode(name=n.name, subscriber=n.subscriber, ae_title=n.ae_title,
                               host=n.host, port=n.port, created_at=n.created_at,
                               tls=_tls_out(n.tls))


def _push(p: PushRow, instances=()) -> dicom_pb2.Push:
    return dicom_pb2.Push(push_id=p.push_id, job_id=p.job_id, sender=p.sender,
                          recipient=p.recipient, node=p.node, state=_PUSH_STATES[p.state],
                          reason=p.reason, attempts=p.attempts,
                          instances_delivered=p.delivered, proof=proof_of(p),
                          committed=p.committed,
                          created_at=p.created_at, updated_at=p.updated_at,
                          instances=[dicom_pb2.PushInstance(
                              sop_instance_uid=i.sop_instance_uid, status=i.status or 0,
                              answered=i.status is not None, commitment=i.commitment)
                              for i in instances])


_OUTPUTS = {dicom_pb2.ROUTING_OUTPUT_UNSPECIFIED: "dicom_series",
            dicom_pb2.ROUTING_OUTPUT_DERIVED_SERIES: "dicom_series",
            dicom_pb2.ROUTING_OUTPUT_DICOM_FILE: "dicom_file"}
_OUTPUT_ENUMS = {"dicom_series": dicom_pb2.ROUTING_OUTPUT_DERIVED_SERIES,
                 "dicom_file": dicom_pb2.ROUTING_OUTPUT_DICOM_FILE}


def rule_of(message: dicom_pb2.RoutingRule, *, max_image_bytes: int) -> Rule:
    """The domain's rule for a RoutingRule (its wire fields checked; the domain checks
    the rest)."""
    if message.output not in _OUTPUTS:
        raise InvalidArgument(f"expected one of {', '.join(dicom_pb2.RoutingOutput.keys())}",
                              "rule.output")
    with Fields("rule.process").placed():
        process = process_request(message.process, max_image_bytes=max_image_bytes,
                                  template=True)
    if message.process.HasField("input"):
        raise InvalidArgument("leave it empty: the received series is the input",
                              "rule.process.input")
    return Rule(message.subscriber, process, calling_ae=message.calling_ae,
                called_ae=message.called_ae, modality=message.modality,
                series_description=message.series_description, tags=dict(message.tags),
                output=_OUTPUTS[message.output], destination=message.destination,
                label=message.label, dicom_nodes=tuple(message.dicom_nodes))


def legacy_rule(blob: bytes, *, max_image_bytes: int) -> Rule:
    """A rule as earlier versions kept it (a RoutingRule message), for
    :meth:`RuleBook.upgrade`."""
    message = dicom_pb2.RoutingRule.FromString(blob)
    return dataclasses.replace(rule_of(message, max_image_bytes=max_image_bytes),
                               rule_id=message.rule_id, created_at=message.created_at)


def rule_message(rule: Rule) -> dicom_pb2.RoutingRule:
    return dicom_pb2.RoutingRule(
        rule_id=rule.rule_id, subscriber=rule.subscriber, calling_ae=rule.calling_ae,
        called_ae=rule.called_ae, modality=rule.modality,
        series_description=rule.series_description, tags=dict(rule.tags),
        process=process_header(rule.process), output=_OUTPUT_ENUMS[rule.output],
        destination=rule.destination, label=rule.label, created_at=rule.created_at,
        dicom_nodes=list(rule.dicom_nodes))


_METHODS = {dicom_pb2.RETRIEVE_METHOD_UNSPECIFIED: "", dicom_pb2.RETRIEVE_METHOD_MOVE: "move",
            dicom_pb2.RETRIEVE_METHOD_GET: "get"}
_METHOD_ENUMS = {"move": dicom_pb2.RETRIEVE_METHOD_MOVE, "get": dicom_pb2.RETRIEVE_METHOD_GET}


def _method(value: int, field: str) -> str:
    if value not in _METHODS:
        raise InvalidArgument(f"expected one of {', '.join(dicom_pb2.RetrieveMethod.keys())}",
                              field)
    return _METHODS[value]


def _source(s: Source) -> dicom_pb2.DicomSource:
    return dicom_pb2.DicomSource(name=s.name, subscriber=s.subscriber, ae_title=s.ae_title,
                                 host=s.host, port=s.port, method=_METHOD_ENUMS[s.method],
                                 created_at=s.created_at, every_seconds=s.every,
                                 schedule_days=s.days, schedule_modality=s.modality,
                                 last_run_at=s.last_run, tls=_tls_out(s.tls),
                                 capacity_url=s.capacity_url,
                                 offload_below_percent=s.below_percent,
                                 offload_below_mib=s.below_mib, capacity_max_mib=s.max_mib,
                                 capacity_state=s.capacity_state,
                                 capacity_checked_at=s.capacity_at)


def _ae(ae: CallingAE) -> dicom_pb2.CallingAe:
    return dicom_pb2.CallingAe(ae_title=ae.ae_title, subscriber=ae.subscriber, host=ae.host,
                               created_at=ae.created_at)


class DicomServicer(dicom_pb2_grpc.DicomServiceServicer):
    def __init__(self, guard: Guard, registry: NodeRegistry, rules: RuleBook,
                 pushes: PushBook, sources: SourceBook):
        self.guard = guard
        self.sources = sources
        #: The running DICOM node (set once it listens; None while --dicom-port is off).
        self.node = None
        self.registry = registry
        self.rules = rules
        self.pushes = pushes

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
        rule = rule_of(request.rule, max_image_bytes=self.guard.config.max_image_bytes)
        rule = await self.rules.create(rule, self.pushes)
        call.object_id = rule.rule_id
        return dicom_pb2.CreateRoutingRuleResponse(rule=rule_message(rule))

    @rpc("dicom.rules.delete", "admin")
    async def DeleteRoutingRule(self, request, context, call):
        call.object_id = request.rule_id
        await self.rules.delete(request.rule_id)
        return dicom_pb2.DeleteRoutingRuleResponse()

    @rpc("dicom.rules.list", "admin")
    async def ListRoutingRules(self, request, context, call):
        return dicom_pb2.ListRoutingRulesResponse(
            rules=[rule_message(r) for r in await self.rules.list(request.subscriber)])

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
                                          n.port, _tls_in(n))
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
        instances = await self.pushes.instance_statuses(p.push_id for p in rows)
        return dicom_pb2.ListPushesResponse(
            pushes=[_push(p, instances[p.push_id]) for p in rows])

    @rpc("dicom.sources.register", ("process", "store"))
    async def RegisterSource(self, request, context, call):
        s = request.source
        call.object_id = s.name
        src = await self.sources.add(call.principal.subscriber, s.name, s.ae_title, s.host,
                                     s.port, _method(s.method, "source.method") or "move",
                                     every=s.every_seconds, days=s.schedule_days,
                                     modality=s.schedule_modality, tls=_tls_in(s),
                                     offload=Offload(s.capacity_url, s.offload_below_percent,
                                                     s.offload_below_mib, s.capacity_max_mib))
        return dicom_pb2.RegisterSourceResponse(source=_source(src))

    @rpc("dicom.sources.delete", ("process", "store"))
    async def DeleteSource(self, request, context, call):
        call.object_id = request.name
        await self.sources.delete(call.principal.subscriber, request.name)
        return dicom_pb2.DeleteSourceResponse()

    @rpc("dicom.sources.list", ("process", "store"))
    async def ListSources(self, request, context, call):
        sources = await self.sources.sources(call.principal.subscriber)
        return dicom_pb2.ListSourcesResponse(sources=[_source(s) for s in sources])

    @rpc("dicom.collect", ("process", "store"))
    async def Collect(self, request, context, call):
        call.object_id = request.source
        if self.node is None:
            raise FailedPrecondition("this server has no DICOM port: start it with "
                                     "--dicom-port to collect", "source")
        query = Query(request.modality, request.date_from, request.date_to,
                      request.study_instance_uid, request.patient_id)
        out = await self.node.collector.collect(call.principal.subscriber, request.source,
                                                query, _method(request.method, "method"))
        return dicom_pb2.CollectResponse(
            series_found=out.found, series_skipped=out.skipped, series_retrieved=out.retrieved,
            instances_retrieved=out.instances, failures=out.failures or [])
