from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    INT8: _ClassVar[DType]
    UINT16: _ClassVar[DType]
    INT16: _ClassVar[DType]
    UINT32: _ClassVar[DType]
    INT32: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    FLOAT64: _ClassVar[DType]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    RAW: _ClassVar[Encoding]
    DICOM: _ClassVar[Encoding]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_NONE: _ClassVar[Compression]
    ZSTD: _ClassVar[Compression]
    BLOSC: _ClassVar[Compression]
DTYPE_UNSPECIFIED: DType
UINT8: DType
INT8: DType
UINT16: DType
INT16: DType
UINT32: DType
INT32: DType
FLOAT32: DType
FLOAT64: DType
ENCODING_UNSPECIFIED: Encoding
RAW: Encoding
DICOM: Encoding
COMPRESSION_NONE: Compression
ZSTD: Compression
BLOSC: Compression

class ImageDescriptor(_message.Message):
    __slots__ = ("encoding", "shape", "dtype", "spacing_mm", "file_sizes", "compression", "size", "crc32")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SPACING_MM_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    encoding: Encoding
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    spacing_mm: _containers.RepeatedScalarFieldContainer[float]
    file_sizes: _containers.RepeatedScalarFieldContainer[int]
    compression: Compression
    size: int
    crc32: int
    def __init__(self, encoding: _Optional[_Union[Encoding, str]] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., spacing_mm: _Optional[_Iterable[float]] = ..., file_sizes: _Optional[_Iterable[int]] = ..., compression: _Optional[_Union[Compression, str]] = ..., size: _Optional[int] = ..., crc32: _Optional[int] = ...) -> None: ...

class ImageSource(_message.Message):
    __slots__ = ("inline", "image_id")
    INLINE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    inline: ImageDescriptor
    image_id: str
    def __init__(self, inline: _Optional[_Union[ImageDescriptor, _Mapping]] = ..., image_id: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("image", "data")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    image: int
    data: bytes
    def __init__(self, image: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
