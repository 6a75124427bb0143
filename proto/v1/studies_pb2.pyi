from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SetStudyStatusRequest(_message.Message):
    __slots__ = ("image_id", "study_instance_uid", "status")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    study_instance_uid: str
    status: str
    def __init__(self, image_id: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class SetStudyStatusResponse(_message.Message):
    __slots__ = ("status", "previous_status", "allowed_versions")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    status: str
    previous_status: str
    allowed_versions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[str] = ..., previous_status: _Optional[str] = ..., allowed_versions: _Optional[_Iterable[str]] = ...) -> None: ...

class GetStudyStatusRequest(_message.Message):
    __slots__ = ("image_id", "study_instance_uid")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    study_instance_uid: str
    def __init__(self, image_id: _Optional[str] = ..., study_instance_uid: _Optional[str] = ...) -> None: ...

class GetStudyStatusResponse(_message.Message):
    __slots__ = ("status", "changed_at", "changed_by", "allowed_versions", "statuses")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    status: str
    changed_at: float
    changed_by: str
    allowed_versions: _containers.RepeatedScalarFieldContainer[str]
    statuses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[str] = ..., changed_at: _Optional[float] = ..., changed_by: _Optional[str] = ..., allowed_versions: _Optional[_Iterable[str]] = ..., statuses: _Optional[_Iterable[str]] = ...) -> None: ...
