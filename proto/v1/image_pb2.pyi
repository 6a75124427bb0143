from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    DATA_TYPE_UINT8: _ClassVar[DataType]
    DATA_TYPE_INT8: _ClassVar[DataType]
    DATA_TYPE_UINT16: _ClassVar[DataType]
    DATA_TYPE_INT16: _ClassVar[DataType]
    DATA_TYPE_UINT32: _ClassVar[DataType]
    DATA_TYPE_INT32: _ClassVar[DataType]
    DATA_TYPE_FLOAT32: _ClassVar[DataType]
    DATA_TYPE_FLOAT64: _ClassVar[DataType]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    ENCODING_RAW: _ClassVar[Encoding]
    ENCODING_DICOM: _ClassVar[Encoding]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_UNSPECIFIED: _ClassVar[Compression]
    COMPRESSION_ZSTD: _ClassVar[Compression]
    COMPRESSION_BLOSC: _ClassVar[Compression]
    COMPRESSION_NONE: _ClassVar[Compression]
DATA_TYPE_UNSPECIFIED: DataType
DATA_TYPE_UINT8: DataType
DATA_TYPE_INT8: DataType
DATA_TYPE_UINT16: DataType
DATA_TYPE_INT16: DataType
DATA_TYPE_UINT32: DataType
DATA_TYPE_INT32: DataType
DATA_TYPE_FLOAT32: DataType
DATA_TYPE_FLOAT64: DataType
ENCODING_UNSPECIFIED: Encoding
ENCODING_RAW: Encoding
ENCODING_DICOM: Encoding
COMPRESSION_UNSPECIFIED: Compression
COMPRESSION_ZSTD: Compression
COMPRESSION_BLOSC: Compression
COMPRESSION_NONE: Compression

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
    dtype: DataType
    spacing_mm: _containers.RepeatedScalarFieldContainer[float]
    file_sizes: _containers.RepeatedScalarFieldContainer[int]
    compression: Compression
    size: int
    crc32: int
    def __init__(self, encoding: _Optional[_Union[Encoding, str]] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DataType, str]] = ..., spacing_mm: _Optional[_Iterable[float]] = ..., file_sizes: _Optional[_Iterable[int]] = ..., compression: _Optional[_Union[Compression, str]] = ..., size: _Optional[int] = ..., crc32: _Optional[int] = ...) -> None: ...

class ImageSource(_message.Message):
    __slots__ = ("inline", "image_id", "version")
    INLINE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    inline: ImageDescriptor
    image_id: str
    version: str
    def __init__(self, inline: _Optional[_Union[ImageDescriptor, _Mapping]] = ..., image_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data", "operand")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OPERAND_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    operand: int
    def __init__(self, data: _Optional[bytes] = ..., operand: _Optional[int] = ...) -> None: ...
