from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class MoveImageRequest(_message.Message):
    __slots__ = ("image_id", "tier")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    tier: str
    def __init__(self, image_id: _Optional[str] = ..., tier: _Optional[str] = ...) -> None: ...

class MoveImageResponse(_message.Message):
    __slots__ = ("blobs_moved", "bytes_moved", "tier")
    BLOBS_MOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_MOVED_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    blobs_moved: int
    bytes_moved: int
    tier: str
    def __init__(self, blobs_moved: _Optional[int] = ..., bytes_moved: _Optional[int] = ..., tier: _Optional[str] = ...) -> None: ...

class ApplyTierPolicyRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class ApplyTierPolicyResponse(_message.Message):
    __slots__ = ("image_ids", "blobs", "bytes")
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    blobs: int
    bytes: int
    def __init__(self, image_ids: _Optional[_Iterable[str]] = ..., blobs: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...
