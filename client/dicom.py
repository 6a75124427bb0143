"""The DicomService of a medcompute server (also ``Client.dicom``): calling AE titles,
routing rules (admin role) and the caller's series received over DICOM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

from medcompute.client.calls import DEFAULT_SERVER, call
from medcompute.client.channel import open_channel
from medcompute.client.ops import parse_op
from medcompute.proto.v1 import dicom_pb2, dicom_pb2_grpc, processing_pb2

__all__ = ["DicomClient", "OUTPUTS", "tls"]

OUTPUTS = {"series": dicom_pb2.ROUTING_OUTPUT_DERIVED_SERIES,
           "file": dicom_pb2.ROUTING_OUTPUT_DICOM_FILE}
_METHODS = {"move": dicom_pb2.RETRIEVE_METHOD_MOVE, "get": dicom_pb2.RETRIEVE_METHOD_GET}
_DEVICES = {"auto": processing_pb2.DEVICE_AUTO, "cpu": processing_pb2.DEVICE_CPU,
            "gpu": processing_pb2.DEVICE_GPU}


def tls(*, ca_pem: str = "", client_cert_pem: str = "", client_key_pem: str = "",
        server_name: str = "") -> dicom_pb2.DicomTls:
    """DICOM TLS settings of a node or source: PEM text (not paths), see DicomTls."""
    return dicom_pb2.DicomTls(ca_pem=ca_pem, client_cert_pem=client_cert_pem,
                              client_key_pem=client_key_pem, server_name=server_name)


class DicomClient:
    """Parameters as for ``StoreClient``: an address or a shared ``channel``."""

    def __init__(self, address: str = DEFAULT_SERVER, *, timeout: float = 600.0,
                 channel: grpc.Channel | None = None, **connection):
        self.timeout = timeout
        self._own = channel is None
        self._channel = channel or open_channel(address, **connection)
        self._stub = dicom_pb2_grpc.DicomServiceStub(self._channel)

    def close(self) -> None:
        if self._own:
            self._channel.close()

    def __enter__(self) -> DicomClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _do(self, method, request):
        return call(method, request, timeout=self.timeout)

    # -- calling AE titles (admin) --------------------------------------------------
    def register_calling_ae(self, ae_title: str, subscriber: str, host: str):
        return self._do(self._stub.RegisterCallingAe, dicom_pb2.RegisterCallingAeRequest(
            calling_ae=dicom_pb2.CallingAe(ae_title=ae_title, subscriber=subscriber,
                                           host=host))).calling_ae

    def delete_calling_ae(self, ae_title: str) -> None:
        self._do(self._stub.DeleteCallingAe, dicom_pb2.DeleteCallingAeRequest(
            ae_title=ae_title))

    def calling_aes(self, subscriber: str = ""):
        return list(self._do(self._stub.ListCallingAes, dicom_pb2.ListCallingAesRequest(
            subscriber=subscriber)).calling_aes)

    # -- routing rules (admin) ------------------------------------------------------
    def create_rule(self, subscriber: str, ops: Sequence[str], *, calling_ae: str = "",
                    called_ae: str = "", modality: str = "", series_description: str = "",
                    tags: Mapping[str, str] | None = None, output: str = "series",
                    device: str = "auto", destination: str = "", label: str = "",
                    dicom_nodes: Sequence[str] = ()):
        """A routing rule: series of ``subscriber`` that match run ``ops`` as a job."""
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
        if device not in _DEVICES:
            raise ValueError(f"device: expected one of {', '.join(_DEVICES)}, got {device!r}")
        process = processing_pb2.ProcessHeader(pipeline=[parse_op(op) for op in ops],
                                               device=_DEVICES[device])
        rule = dicom_pb2.RoutingRule(
            subscriber=subscriber, calling_ae=calling_ae, called_ae=called_ae,
            modality=modality, series_description=series_description, tags=dict(tags or {}),
            process=process, output=OUTPUTS[output], destination=destination, label=label,
            dicom_nodes=list(dicom_nodes))
        return self._do(self._stub.CreateRoutingRule,
                        dicom_pb2.CreateRoutingRuleRequest(rule=rule)).rule

    def delete_rule(self, rule_id: str) -> None:
        self._do(self._stub.DeleteRoutingRule, dicom_pb2.DeleteRoutingRuleRequest(
            rule_id=rule_id))

    def rules(self, subscriber: str = ""):
        return list(self._do(self._stub.ListRoutingRules, dicom_pb2.ListRoutingRulesRequest(
            subscriber=subscriber)).rules)

    # -- the caller's received series -----------------------------------------------
    def received_series(self):
        return list(self._do(self._stub.ListReceivedSeries,
                             dicom_pb2.ListReceivedSeriesRequest()).series)

    # -- the caller's DICOM nodes (receive role) and pushes ---------------------------
    def register_node(self, name: str, ae_title: str, host: str, port: int, *,
                      tls: dicom_pb2.DicomTls | None = None):
        """A DICOM node results are pushed to; with ``tls`` (see :func:`tls`), over DICOM
        TLS."""
        return self._do(self._stub.RegisterNode, dicom_pb2.RegisterNodeRequest(
            node=dicom_pb2.DicomNode(name=name, ae_title=ae_title, host=host, port=port,
                                     tls=tls))).node

    def delete_node(self, name: str) -> None:
        self._do(self._stub.DeleteNode, dicom_pb2.DeleteNodeRequest(name=name))

    def nodes(self):
        return list(self._do(self._stub.ListNodes, dicom_pb2.ListNodesRequest()).nodes)

    def pushes(self, job_id: str = ""):
        """Pushes to DICOM nodes the caller sent or receives (of one job, or all)."""
        return list(self._do(self._stub.ListPushes,
                             dicom_pb2.ListPushesRequest(job_id=job_id)).pushes)

    # -- collecting from the caller's PACS ------------------------------------------
    def register_source(self, name: str, ae_title: str, host: str, port: int, *,
                        method: str = "move", every_seconds: int = 0, schedule_days: int = 0,
                        schedule_modality: str = "", tls: dicom_pb2.DicomTls | None = None,
                        capacity_url: str = "", offload_below_percent: float = 0.0,
                        offload_below_mib: int = 0, capacity_max_mib: int = 0):
        """A PACS to collect from (``method``: move or get); with ``every_seconds``, also
        collected on that schedule (studies of the last ``schedule_days`` days); with
        ``capacity_url`` and a threshold, its oldest studies are collected when its free
        capacity is below the threshold (storage offload)."""
        if method not in _METHODS:
            raise ValueError(f"method: expected one of {', '.join(_METHODS)}, got {method!r}")
        return self._do(self._stub.RegisterSource, dicom_pb2.RegisterSourceRequest(
            source=dicom_pb2.DicomSource(
                name=name, ae_title=ae_title, host=host, port=port, method=_METHODS[method],
                every_seconds=every_seconds, schedule_days=schedule_days,
                schedule_modality=schedule_modality, tls=tls, capacity_url=capacity_url,
                offload_below_percent=offload_below_percent,
                offload_below_mib=offload_below_mib,
                capacity_max_mib=capacity_max_mib))).source

    def delete_source(self, name: str) -> None:
        self._do(self._stub.DeleteSource, dicom_pb2.DeleteSourceRequest(name=name))

    def sources(self):
        return list(self._do(self._stub.ListSources, dicom_pb2.ListSourcesRequest()).sources)

    def collect(self, source: str, *, modality: str = "", date_from: str = "",
                date_to: str = "", study_instance_uid: str = "", patient_id: str = "",
                method: str = ""):
        """Query the source and retrieve the matching series not collected before."""
        if method and method not in _METHODS:
            raise ValueError(f"method: expected one of {', '.join(_METHODS)}, got {method!r}")
        return self._do(self._stub.Collect, dicom_pb2.CollectRequest(
            source=source, modality=modality, date_from=date_from, date_to=date_to,
            study_instance_uid=study_instance_uid, patient_id=patient_id,
            method=_METHODS[method] if method else 0))
