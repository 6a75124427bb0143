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
ROUTING_OUTPUT_UNSPECIFIED: RoutingOutput
ROUTING_OUTPUT_DERIVED_SERIES: RoutingOutput
ROUTING_OUTPUT_DICOM_FILE: RoutingOutput
SERIES_STATE_UNSPECIFIED: SeriesState
SERIES_STATE_RECEIVING: SeriesState
SERIES_STATE_COMPLETE: SeriesState
SERIES_STATE_FAILED: SeriesState

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
    __slots__ = ("rule_id", "subscriber", "calling_ae", "called_ae", "modality", "series_description", "tags", "process", "output", "destination", "label", "created_at")
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
    def __init__(self, rule_id: _Optional[str] = ..., subscriber: _Optional[str] = ..., calling_ae: _Optional[str] = ..., called_ae: _Optional[str] = ..., modality: _Optional[str] = ..., series_description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., process: _Optional[_Union[_processing_pb2.ProcessHeader, _Mapping]] = ..., output: _Optional[_Union[RoutingOutput, str]] = ..., destination: _Optional[str] = ..., label: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

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
