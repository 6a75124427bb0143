from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryRule(_message.Message):
    __slots__ = ("sender", "recipient", "created_at")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    sender: str
    recipient: str
    created_at: float
    def __init__(self, sender: _Optional[str] = ..., recipient: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class AllowDeliveryRequest(_message.Message):
    __slots__ = ("sender", "recipient")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    sender: str
    recipient: str
    def __init__(self, sender: _Optional[str] = ..., recipient: _Optional[str] = ...) -> None: ...

class AllowDeliveryResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: DeliveryRule
    def __init__(self, rule: _Optional[_Union[DeliveryRule, _Mapping]] = ...) -> None: ...

class DisallowDeliveryRequest(_message.Message):
    __slots__ = ("sender", "recipient")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    sender: str
    recipient: str
    def __init__(self, sender: _Optional[str] = ..., recipient: _Optional[str] = ...) -> None: ...

class DisallowDeliveryResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: DeliveryRule
    def __init__(self, rule: _Optional[_Union[DeliveryRule, _Mapping]] = ...) -> None: ...

class ListDeliveryRulesRequest(_message.Message):
    __slots__ = ("sender", "recipient")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    sender: str
    recipient: str
    def __init__(self, sender: _Optional[str] = ..., recipient: _Optional[str] = ...) -> None: ...

class ListDeliveryRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[DeliveryRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[DeliveryRule, _Mapping]]] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_id", "subscriber", "roles", "created_at", "revoked_at", "certificate_sha256")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    subscriber: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    created_at: float
    revoked_at: float
    certificate_sha256: str
    def __init__(self, key_id: _Optional[str] = ..., subscriber: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., created_at: _Optional[float] = ..., revoked_at: _Optional[float] = ..., certificate_sha256: _Optional[str] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("subscriber", "roles", "certificate_sha256")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    certificate_sha256: str
    def __init__(self, subscriber: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., certificate_sha256: _Optional[str] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key", "api_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyInfo
    api_key: str
    def __init__(self, key: _Optional[_Union[KeyInfo, _Mapping]] = ..., api_key: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("subscriber",)
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    def __init__(self, subscriber: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyInfo
    def __init__(self, key: _Optional[_Union[KeyInfo, _Mapping]] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "at", "subscriber", "action", "object_id", "outcome", "detail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: float
    subscriber: str
    action: str
    object_id: str
    outcome: str
    detail: str
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[float] = ..., subscriber: _Optional[str] = ..., action: _Optional[str] = ..., object_id: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since", "until", "subscriber", "action", "page_size", "after_seq")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    since: float
    until: float
    subscriber: str
    action: str
    page_size: int
    after_seq: int
    def __init__(self, since: _Optional[float] = ..., until: _Optional[float] = ..., subscriber: _Optional[str] = ..., action: _Optional[str] = ..., page_size: _Optional[int] = ..., after_seq: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries", "next_after_seq")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_after_seq: int
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_after_seq: _Optional[int] = ...) -> None: ...
