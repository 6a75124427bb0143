from medcompute.proto.v1 import processing_pb2 as _processing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoutingOutput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_OUTPUT_UNSPECIFIED: _ClassVar[RoutingOutput]
    ROUTING_OUTPUT_DERIVED_SERIES: _ClassVar[RoutingOutput]
    ROUTING_OUTPUT_DICOM_FILE: _ClassVar[RoutingOutput]

class SeriesState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERIES_STATE_UNSPECIFIED: _ClassVar[SeriesState]
    SERIES_STATE_RECEIVING: _ClassVar[SeriesState]
    SERIES_STATE_COMPLETE: _ClassVar[SeriesState]
    SERIES_STATE_FAILED: _ClassVar[SeriesState]

class PushState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUSH_STATE_UNSPECIFIED: _ClassVar[PushState]
    PUSH_STATE_PENDING: _ClassVar[PushState]
    PUSH_STATE_SENDING: _ClassVar[PushState]
    PUSH_STATE_DELIVERED: _ClassVar[PushState]
    PUSH_STATE_FAILED: _ClassVar[PushState]

class RetrieveMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRIEVE_METHOD_UNSPECIFIED: _ClassVar[RetrieveMethod]
    RETRIEVE_METHOD_MOVE: _ClassVar[RetrieveMethod]
    RETRIEVE_METHOD_GET: _ClassVar[RetrieveMethod]
ROUTING_OUTPUT_UNSPECIFIED: RoutingOutput
ROUTING_OUTPUT_DERIVED_SERIES: RoutingOutput
ROUTING_OUTPUT_DICOM_FILE: RoutingOutput
SERIES_STATE_UNSPECIFIED: SeriesState
SERIES_STATE_RECEIVING: SeriesState
SERIES_STATE_COMPLETE: SeriesState
SERIES_STATE_FAILED: SeriesState
PUSH_STATE_UNSPECIFIED: PushState
PUSH_STATE_PENDING: PushState
PUSH_STATE_SENDING: PushState
PUSH_STATE_DELIVERED: PushState
PUSH_STATE_FAILED: PushState
RETRIEVE_METHOD_UNSPECIFIED: RetrieveMethod
RETRIEVE_METHOD_MOVE: RetrieveMethod
RETRIEVE_METHOD_GET: RetrieveMethod

class CallingAe(_message.Message):
    __slots__ = ("ae_title", "subscriber", "host", "created_at")
    AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ae_title: str
    subscriber: str
    host: str
    created_at: float
    def __init__(self, ae_title: _Optional[str] = ..., subscriber: _Optional[str] = ..., host: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class RegisterCallingAeRequest(_message.Message):
    __slots__ = ("calling_ae",)
    CALLING_AE_FIELD_NUMBER: _ClassVar[int]
    calling_ae: CallingAe
    def __init__(self, calling_ae: _Optional[_Union[CallingAe, _Mapping]] = ...) -> None: ...

class RegisterCallingAeResponse(_message.Message):
    __slots__ = ("calling_ae",)
    CALLING_AE_FIELD_NUMBER: _ClassVar[int]
    calling_ae: CallingAe
    def __init__(self, calling_ae: _Optional[_Union[CallingAe, _Mapping]] = ...) -> None: ...

class DeleteCallingAeRequest(_message.Message):
    __slots__ = ("ae_title",)
    AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    ae_title: str
    def __init__(self, ae_title: _Optional[str] = ...) -> None: ...

class DeleteCallingAeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCallingAesRequest(_message.Message):
    __slots__ = ("subscriber",)
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    def __init__(self, subscriber: _Optional[str] = ...) -> None: ...

class ListCallingAesResponse(_message.Message):
    __slots__ = ("calling_aes",)
    CALLING_AES_FIELD_NUMBER: _ClassVar[int]
    calling_aes: _containers.RepeatedCompositeFieldContainer[CallingAe]
    def __init__(self, calling_aes: _Optional[_Iterable[_Union[CallingAe, _Mapping]]] = ...) -> None: ...

class RoutingRule(_message.Message):
    __slots__ = ("rule_id", "subscriber", "calling_ae", "called_ae", "modality", "series_description", "tags", "process", "output", "destination", "label", "created_at", "dicom_nodes")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    CALLING_AE_FIELD_NUMBER: _ClassVar[int]
    CALLED_AE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SERIES_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DICOM_NODES_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    subscriber: str
    calling_ae: str
    called_ae: str
    modality: str
    series_description: str
    tags: _containers.ScalarMap[str, str]
    process: _processing_pb2.ProcessHeader
    output: RoutingOutput
    destination: str
    label: str
    created_at: float
    dicom_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rule_id: _Optional[str] = ..., subscriber: _Optional[str] = ..., calling_ae: _Optional[str] = ..., called_ae: _Optional[str] = ..., modality: _Optional[str] = ..., series_description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., process: _Optional[_Union[_processing_pb2.ProcessHeader, _Mapping]] = ..., output: _Optional[_Union[RoutingOutput, str]] = ..., destination: _Optional[str] = ..., label: _Optional[str] = ..., created_at: _Optional[float] = ..., dicom_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateRoutingRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: RoutingRule
    def __init__(self, rule: _Optional[_Union[RoutingRule, _Mapping]] = ...) -> None: ...

class CreateRoutingRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: RoutingRule
    def __init__(self, rule: _Optional[_Union[RoutingRule, _Mapping]] = ...) -> None: ...

class DeleteRoutingRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class DeleteRoutingRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRoutingRulesRequest(_message.Message):
    __slots__ = ("subscriber",)
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    def __init__(self, subscriber: _Optional[str] = ...) -> None: ...

class ListRoutingRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[RoutingRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[RoutingRule, _Mapping]]] = ...) -> None: ...

class ReceivedSeries(_message.Message):
    __slots__ = ("series_instance_uid", "calling_ae", "called_ae", "state", "image_id", "instances", "first_received_at", "last_received_at", "reason", "jobs")
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    CALLING_AE_FIELD_NUMBER: _ClassVar[int]
    CALLED_AE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    FIRST_RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    calling_ae: str
    called_ae: str
    state: SeriesState
    image_id: str
    instances: int
    first_received_at: float
    last_received_at: float
    reason: str
    jobs: _containers.RepeatedCompositeFieldContainer[RoutedJob]
    def __init__(self, series_instance_uid: _Optional[str] = ..., calling_ae: _Optional[str] = ..., called_ae: _Optional[str] = ..., state: _Optional[_Union[SeriesState, str]] = ..., image_id: _Optional[str] = ..., instances: _Optional[int] = ..., first_received_at: _Optional[float] = ..., last_received_at: _Optional[float] = ..., reason: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[RoutedJob, _Mapping]]] = ...) -> None: ...

class RoutedJob(_message.Message):
    __slots__ = ("rule_id", "job_id")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    job_id: str
    def __init__(self, rule_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class ListReceivedSeriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReceivedSeriesResponse(_message.Message):
    __slots__ = ("series",)
    SERIES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[ReceivedSeries]
    def __init__(self, series: _Optional[_Iterable[_Union[ReceivedSeries, _Mapping]]] = ...) -> None: ...

class DicomNode(_message.Message):
    __slots__ = ("name", "subscriber", "ae_title", "host", "port", "created_at", "tls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    subscriber: str
    ae_title: str
    host: str
    port: int
    created_at: float
    tls: DicomTls
    def __init__(self, name: _Optional[str] = ..., subscriber: _Optional[str] = ..., ae_title: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., created_at: _Optional[float] = ..., tls: _Optional[_Union[DicomTls, _Mapping]] = ...) -> None: ...

class DicomTls(_message.Message):
    __slots__ = ("ca_pem", "client_cert_pem", "client_key_pem", "server_name", "client_key_set")
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_KEY_SET_FIELD_NUMBER: _ClassVar[int]
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str
    server_name: str
    client_key_set: bool
    def __init__(self, ca_pem: _Optional[str] = ..., client_cert_pem: _Optional[str] = ..., client_key_pem: _Optional[str] = ..., server_name: _Optional[str] = ..., client_key_set: _Optional[bool] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: DicomNode
    def __init__(self, node: _Optional[_Union[DicomNode, _Mapping]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: DicomNode
    def __init__(self, node: _Optional[_Union[DicomNode, _Mapping]] = ...) -> None: ...

class DeleteNodeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[DicomNode]
    def __init__(self, nodes: _Optional[_Iterable[_Union[DicomNode, _Mapping]]] = ...) -> None: ...

class Push(_message.Message):
    __slots__ = ("push_id", "job_id", "sender", "recipient", "node", "state", "reason", "attempts", "instances_delivered", "proof", "created_at", "updated_at", "committed", "instances")
    PUSH_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    push_id: str
    job_id: str
    sender: str
    recipient: str
    node: str
    state: PushState
    reason: str
    attempts: int
    instances_delivered: int
    proof: str
    created_at: float
    updated_at: float
    committed: bool
    instances: _containers.RepeatedCompositeFieldContainer[PushInstance]
    def __init__(self, push_id: _Optional[str] = ..., job_id: _Optional[str] = ..., sender: _Optional[str] = ..., recipient: _Optional[str] = ..., node: _Optional[str] = ..., state: _Optional[_Union[PushState, str]] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., instances_delivered: _Optional[int] = ..., proof: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., committed: _Optional[bool] = ..., instances: _Optional[_Iterable[_Union[PushInstance, _Mapping]]] = ...) -> None: ...

class PushInstance(_message.Message):
    __slots__ = ("sop_instance_uid", "status", "answered", "commitment")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    status: int
    answered: bool
    commitment: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., status: _Optional[int] = ..., answered: _Optional[bool] = ..., commitment: _Optional[str] = ...) -> None: ...

class ListPushesRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListPushesResponse(_message.Message):
    __slots__ = ("pushes",)
    PUSHES_FIELD_NUMBER: _ClassVar[int]
    pushes: _containers.RepeatedCompositeFieldContainer[Push]
    def __init__(self, pushes: _Optional[_Iterable[_Union[Push, _Mapping]]] = ...) -> None: ...

class DicomSource(_message.Message):
    __slots__ = ("name", "subscriber", "ae_title", "host", "port", "method", "created_at", "every_seconds", "schedule_days", "schedule_modality", "last_run_at", "tls", "capacity_url", "offload_below_percent", "offload_below_mib", "capacity_state", "capacity_checked_at", "capacity_max_mib")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_DAYS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_MODALITY_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_URL_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_BELOW_PERCENT_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_BELOW_MIB_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_STATE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_MAX_MIB_FIELD_NUMBER: _ClassVar[int]
    name: str
    subscriber: str
    ae_title: str
    host: str
    port: int
    method: RetrieveMethod
    created_at: float
    every_seconds: int
    schedule_days: int
    schedule_modality: str
    last_run_at: float
    tls: DicomTls
    capacity_url: str
    offload_below_percent: float
    offload_below_mib: int
    capacity_state: str
    capacity_checked_at: float
    capacity_max_mib: int
    def __init__(self, name: _Optional[str] = ..., subscriber: _Optional[str] = ..., ae_title: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., method: _Optional[_Union[RetrieveMethod, str]] = ..., created_at: _Optional[float] = ..., every_seconds: _Optional[int] = ..., schedule_days: _Optional[int] = ..., schedule_modality: _Optional[str] = ..., last_run_at: _Optional[float] = ..., tls: _Optional[_Union[DicomTls, _Mapping]] = ..., capacity_url: _Optional[str] = ..., offload_below_percent: _Optional[float] = ..., offload_below_mib: _Optional[int] = ..., capacity_state: _Optional[str] = ..., capacity_checked_at: _Optional[float] = ..., capacity_max_mib: _Optional[int] = ...) -> None: ...

class RegisterSourceRequest(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: DicomSource
    def __init__(self, source: _Optional[_Union[DicomSource, _Mapping]] = ...) -> None: ...

class RegisterSourceResponse(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: DicomSource
    def __init__(self, source: _Optional[_Union[DicomSource, _Mapping]] = ...) -> None: ...

class ListSourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSourcesResponse(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[DicomSource]
    def __init__(self, sources: _Optional[_Iterable[_Union[DicomSource, _Mapping]]] = ...) -> None: ...

class DeleteSourceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSourceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectRequest(_message.Message):
    __slots__ = ("source", "modality", "date_from", "date_to", "study_instance_uid", "patient_id", "method")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    DATE_FROM_FIELD_NUMBER: _ClassVar[int]
    DATE_TO_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    source: str
    modality: str
    date_from: str
    date_to: str
    study_instance_uid: str
    patient_id: str
    method: RetrieveMethod
    def __init__(self, source: _Optional[str] = ..., modality: _Optional[str] = ..., date_from: _Optional[str] = ..., date_to: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., patient_id: _Optional[str] = ..., method: _Optional[_Union[RetrieveMethod, str]] = ...) -> None: ...

class CollectResponse(_message.Message):
    __slots__ = ("series_found", "series_skipped", "series_retrieved", "instances_retrieved", "failures")
    SERIES_FOUND_FIELD_NUMBER: _ClassVar[int]
    SERIES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SERIES_RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    series_found: int
    series_skipped: int
    series_retrieved: int
    instances_retrieved: int
    failures: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, series_found: _Optional[int] = ..., series_skipped: _Optional[int] = ..., series_retrieved: _Optional[int] = ..., instances_retrieved: _Optional[int] = ..., failures: _Optional[_Iterable[str]] = ...) -> None: ...
