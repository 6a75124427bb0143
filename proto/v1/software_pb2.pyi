from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PackageParameter(_message.Message):
    __slots__ = ("name", "unit", "default", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    unit: str
    default: float
    description: str
    def __init__(self, name: _Optional[str] = ..., unit: _Optional[str] = ..., default: _Optional[float] = ..., description: _Optional[str] = ...) -> None: ...

class PackageOperation(_message.Message):
    __slots__ = ("name", "summary", "doc", "parameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    doc: str
    parameters: _containers.RepeatedCompositeFieldContainer[PackageParameter]
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., doc: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[PackageParameter, _Mapping]]] = ...) -> None: ...

class PackageInfo(_message.Message):
    __slots__ = ("name", "version", "sha256", "vendor", "licence", "fee_per_use", "status", "publisher", "size", "filename", "operations", "added_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    LICENCE_FIELD_NUMBER: _ClassVar[int]
    FEE_PER_USE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    vendor: str
    licence: str
    fee_per_use: float
    status: str
    publisher: str
    size: int
    filename: str
    operations: _containers.RepeatedCompositeFieldContainer[PackageOperation]
    added_at: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., vendor: _Optional[str] = ..., licence: _Optional[str] = ..., fee_per_use: _Optional[float] = ..., status: _Optional[str] = ..., publisher: _Optional[str] = ..., size: _Optional[int] = ..., filename: _Optional[str] = ..., operations: _Optional[_Iterable[_Union[PackageOperation, _Mapping]]] = ..., added_at: _Optional[float] = ...) -> None: ...

class AddPackageRequest(_message.Message):
    __slots__ = ("filename", "wheel", "vendor", "licence", "fee_per_use")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    WHEEL_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    LICENCE_FIELD_NUMBER: _ClassVar[int]
    FEE_PER_USE_FIELD_NUMBER: _ClassVar[int]
    filename: str
    wheel: bytes
    vendor: str
    licence: str
    fee_per_use: float
    def __init__(self, filename: _Optional[str] = ..., wheel: _Optional[bytes] = ..., vendor: _Optional[str] = ..., licence: _Optional[str] = ..., fee_per_use: _Optional[float] = ...) -> None: ...

class AddPackageResponse(_message.Message):
    __slots__ = ("package",)
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    package: PackageInfo
    def __init__(self, package: _Optional[_Union[PackageInfo, _Mapping]] = ...) -> None: ...

class ListPackagesRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPackagesResponse(_message.Message):
    __slots__ = ("packages",)
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    packages: _containers.RepeatedCompositeFieldContainer[PackageInfo]
    def __init__(self, packages: _Optional[_Iterable[_Union[PackageInfo, _Mapping]]] = ...) -> None: ...

class GetPackageInfoRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetPackageInfoResponse(_message.Message):
    __slots__ = ("package",)
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    package: PackageInfo
    def __init__(self, package: _Optional[_Union[PackageInfo, _Mapping]] = ...) -> None: ...

class ApprovePackageRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ApprovePackageResponse(_message.Message):
    __slots__ = ("package",)
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    package: PackageInfo
    def __init__(self, package: _Optional[_Union[PackageInfo, _Mapping]] = ...) -> None: ...

class RetirePackageRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class RetirePackageResponse(_message.Message):
    __slots__ = ("package",)
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    package: PackageInfo
    def __init__(self, package: _Optional[_Union[PackageInfo, _Mapping]] = ...) -> None: ...

class GrantPackageRequest(_message.Message):
    __slots__ = ("name", "subscriber")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    name: str
    subscriber: str
    def __init__(self, name: _Optional[str] = ..., subscriber: _Optional[str] = ...) -> None: ...

class GrantPackageResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DownloadPackageRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DownloadPackageResponse(_message.Message):
    __slots__ = ("package", "wheel")
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    WHEEL_FIELD_NUMBER: _ClassVar[int]
    package: PackageInfo
    wheel: bytes
    def __init__(self, package: _Optional[_Union[PackageInfo, _Mapping]] = ..., wheel: _Optional[bytes] = ...) -> None: ...

class PackageUsesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PackageUse(_message.Message):
    __slots__ = ("name", "version", "uses", "downloads", "fees")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    uses: int
    downloads: int
    fees: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., uses: _Optional[int] = ..., downloads: _Optional[int] = ..., fees: _Optional[float] = ...) -> None: ...

class PackageUsesResponse(_message.Message):
    __slots__ = ("packages",)
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    packages: _containers.RepeatedCompositeFieldContainer[PackageUse]
    def __init__(self, packages: _Optional[_Iterable[_Union[PackageUse, _Mapping]]] = ...) -> None: ...
