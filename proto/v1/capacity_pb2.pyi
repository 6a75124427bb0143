from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetCapacityRequest(_message.Message):
    __slots__ = ("subscriber", "allocated_bytes")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    allocated_bytes: int
    def __init__(self, subscriber: _Optional[str] = ..., allocated_bytes: _Optional[int] = ...) -> None: ...

class SetCapacityResponse(_message.Message):
    __slots__ = ("storage",)
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    storage: SubscriberStorage
    def __init__(self, storage: _Optional[_Union[SubscriberStorage, _Mapping]] = ...) -> None: ...

class GetStorageUsageRequest(_message.Message):
    __slots__ = ("subscriber", "all_subscribers")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ALL_SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    all_subscribers: bool
    def __init__(self, subscriber: _Optional[str] = ..., all_subscribers: _Optional[bool] = ...) -> None: ...

class TierStorage(_message.Message):
    __slots__ = ("tier", "used_bytes")
    TIER_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    tier: str
    used_bytes: int
    def __init__(self, tier: _Optional[str] = ..., used_bytes: _Optional[int] = ...) -> None: ...

class SubscriberStorage(_message.Message):
    __slots__ = ("subscriber", "allocated_bytes", "used_bytes", "tiers")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    allocated_bytes: int
    used_bytes: int
    tiers: _containers.RepeatedCompositeFieldContainer[TierStorage]
    def __init__(self, subscriber: _Optional[str] = ..., allocated_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[TierStorage, _Mapping]]] = ...) -> None: ...

class GetStorageUsageResponse(_message.Message):
    __slots__ = ("subscribers",)
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    subscribers: _containers.RepeatedCompositeFieldContainer[SubscriberStorage]
    def __init__(self, subscribers: _Optional[_Iterable[_Union[SubscriberStorage, _Mapping]]] = ...) -> None: ...
