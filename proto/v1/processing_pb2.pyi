from medcompute.proto.v1 import image_pb2 as _image_pb2
from medcompute.proto.v1 import operations_pb2 as _operations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Device(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_UNSPECIFIED: _ClassVar[Device]
    DEVICE_GPU: _ClassVar[Device]
    DEVICE_CPU: _ClassVar[Device]
    DEVICE_AUTO: _ClassVar[Device]

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_DICOM_SERIES: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_DICOM_FILE: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_RAW: _ClassVar[OutputFormat]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_LOW: _ClassVar[Priority]
    PRIORITY_NORMAL: _ClassVar[Priority]
    PRIORITY_HIGH: _ClassVar[Priority]
DEVICE_UNSPECIFIED: Device
DEVICE_GPU: Device
DEVICE_CPU: Device
DEVICE_AUTO: Device
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_FORMAT_DICOM_SERIES: OutputFormat
OUTPUT_FORMAT_DICOM_FILE: OutputFormat
OUTPUT_FORMAT_RAW: OutputFormat
PRIORITY_UNSPECIFIED: Priority
PRIORITY_LOW: Priority
PRIORITY_NORMAL: Priority
PRIORITY_HIGH: Priority

class ProcessHeader(_message.Message):
    __slots__ = ("pipeline", "input", "operands", "device", "output_dtype", "compute_dtype", "output_format", "result_compression", "allow_fallback", "store_result", "retention_seconds", "recompute", "priority", "input_region", "output_region")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OPERANDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    RESULT_COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    STORE_RESULT_FIELD_NUMBER: _ClassVar[int]
    RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_REGION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGION_FIELD_NUMBER: _ClassVar[int]
    pipeline: _containers.RepeatedCompositeFieldContainer[_operations_pb2.Operation]
    input: _image_pb2.ImageSource
    operands: _containers.RepeatedCompositeFieldContainer[_image_pb2.ImageSource]
    device: Device
    output_dtype: _image_pb2.DataType
    compute_dtype: _image_pb2.DataType
    output_format: OutputFormat
    result_compression: _image_pb2.Compression
    allow_fallback: bool
    store_result: bool
    retention_seconds: int
    recompute: bool
    priority: Priority
    input_region: SharedRegion
    output_region: SharedRegion
    def __init__(self, pipeline: _Optional[_Iterable[_Union[_operations_pb2.Operation, _Mapping]]] = ..., input: _Optional[_Union[_image_pb2.ImageSource, _Mapping]] = ..., operands: _Optional[_Iterable[_Union[_image_pb2.ImageSource, _Mapping]]] = ..., device: _Optional[_Union[Device, str]] = ..., output_dtype: _Optional[_Union[_image_pb2.DataType, str]] = ..., compute_dtype: _Optional[_Union[_image_pb2.DataType, str]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., result_compression: _Optional[_Union[_image_pb2.Compression, str]] = ..., allow_fallback: _Optional[bool] = ..., store_result: _Optional[bool] = ..., retention_seconds: _Optional[int] = ..., recompute: _Optional[bool] = ..., priority: _Optional[_Union[Priority, str]] = ..., input_region: _Optional[_Union[SharedRegion, _Mapping]] = ..., output_region: _Optional[_Union[SharedRegion, _Mapping]] = ...) -> None: ...

class SharedRegion(_message.Message):
    __slots__ = ("region_id", "offset", "length")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    region_id: str
    offset: int
    length: int
    def __init__(self, region_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class RegisterRegionRequest(_message.Message):
    __slots__ = ("name", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class RegisterRegionResponse(_message.Message):
    __slots__ = ("region_id",)
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    region_id: str
    def __init__(self, region_id: _Optional[str] = ...) -> None: ...

class UnregisterRegionRequest(_message.Message):
    __slots__ = ("region_id",)
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    region_id: str
    def __init__(self, region_id: _Optional[str] = ...) -> None: ...

class UnregisterRegionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProcessRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ProcessHeader
    chunk: _image_pb2.Chunk
    def __init__(self, header: _Optional[_Union[ProcessHeader, _Mapping]] = ..., chunk: _Optional[_Union[_image_pb2.Chunk, _Mapping]] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("name", "values", "text", "unit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[float]
    text: str
    unit: str
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., text: _Optional[str] = ..., unit: _Optional[str] = ...) -> None: ...

class AppliedOperation(_message.Message):
    __slots__ = ("name", "parameters", "summary")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    name: str
    parameters: _containers.RepeatedCompositeFieldContainer[Parameter]
    summary: str
    def __init__(self, name: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., summary: _Optional[str] = ...) -> None: ...

class Fallback(_message.Message):
    __slots__ = ("happened", "reason")
    HAPPENED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    happened: bool
    reason: str
    def __init__(self, happened: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("job_id", "subscriber", "operations", "images", "voxels", "bytes_in", "bytes_out", "queue_seconds", "compute_seconds", "wall_seconds", "backend", "device", "gpu_seconds", "energy_joules", "fallback", "state", "created_at", "finished_at", "platform_fault", "destination", "software", "transfer_seconds", "compile_seconds", "energy_absent_reason", "fallback_reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    VOXELS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FAULT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPILE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_ABSENT_REASON_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    subscriber: str
    operations: _containers.RepeatedScalarFieldContainer[str]
    images: int
    voxels: int
    bytes_in: int
    bytes_out: int
    queue_seconds: float
    compute_seconds: float
    wall_seconds: float
    backend: str
    device: str
    gpu_seconds: float
    energy_joules: float
    fallback: bool
    state: str
    created_at: float
    finished_at: float
    platform_fault: bool
    destination: str
    software: _containers.RepeatedCompositeFieldContainer[SoftwareUse]
    transfer_seconds: float
    compile_seconds: float
    energy_absent_reason: str
    fallback_reason: str
    def __init__(self, job_id: _Optional[str] = ..., subscriber: _Optional[str] = ..., operations: _Optional[_Iterable[str]] = ..., images: _Optional[int] = ..., voxels: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., queue_seconds: _Optional[float] = ..., compute_seconds: _Optional[float] = ..., wall_seconds: _Optional[float] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., gpu_seconds: _Optional[float] = ..., energy_joules: _Optional[float] = ..., fallback: _Optional[bool] = ..., state: _Optional[str] = ..., created_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., platform_fault: _Optional[bool] = ..., destination: _Optional[str] = ..., software: _Optional[_Iterable[_Union[SoftwareUse, _Mapping]]] = ..., transfer_seconds: _Optional[float] = ..., compile_seconds: _Optional[float] = ..., energy_absent_reason: _Optional[str] = ..., fallback_reason: _Optional[str] = ...) -> None: ...

class SoftwareUse(_message.Message):
    __slots__ = ("package", "version", "sha256", "operation", "fee")
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    package: str
    version: str
    sha256: str
    operation: str
    fee: float
    def __init__(self, package: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., operation: _Optional[str] = ..., fee: _Optional[float] = ...) -> None: ...

class ResultHeader(_message.Message):
    __slots__ = ("job_id", "output", "applied", "backend", "device", "worker", "fallback", "versions", "usage", "slabs", "workers", "stored_image_id", "reused", "placement")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SLABS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    STORED_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    output: _image_pb2.ImageDescriptor
    applied: _containers.RepeatedCompositeFieldContainer[AppliedOperation]
    backend: str
    device: str
    worker: str
    fallback: Fallback
    versions: _containers.ScalarMap[str, str]
    usage: UsageRecord
    slabs: int
    workers: _containers.RepeatedScalarFieldContainer[str]
    stored_image_id: str
    reused: bool
    placement: str
    def __init__(self, job_id: _Optional[str] = ..., output: _Optional[_Union[_image_pb2.ImageDescriptor, _Mapping]] = ..., applied: _Optional[_Iterable[_Union[AppliedOperation, _Mapping]]] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., worker: _Optional[str] = ..., fallback: _Optional[_Union[Fallback, _Mapping]] = ..., versions: _Optional[_Mapping[str, str]] = ..., usage: _Optional[_Union[UsageRecord, _Mapping]] = ..., slabs: _Optional[int] = ..., workers: _Optional[_Iterable[str]] = ..., stored_image_id: _Optional[str] = ..., reused: _Optional[bool] = ..., placement: _Optional[str] = ...) -> None: ...

class ProcessResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ResultHeader
    chunk: _image_pb2.Chunk
    def __init__(self, header: _Optional[_Union[ResultHeader, _Mapping]] = ..., chunk: _Optional[_Union[_image_pb2.Chunk, _Mapping]] = ...) -> None: ...

class ListOperationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ParameterSpec(_message.Message):
    __slots__ = ("name", "type", "per_axis", "unit", "default", "choices", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PER_AXIS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    per_axis: bool
    unit: str
    default: str
    choices: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., per_axis: _Optional[bool] = ..., unit: _Optional[str] = ..., default: _Optional[str] = ..., choices: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class OperationSpec(_message.Message):
    __slots__ = ("name", "summary", "parameters", "package", "version", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    package: str
    version: str
    sha256: str
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., package: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListOperationsResponse(_message.Message):
    __slots__ = ("operations",)
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[OperationSpec]
    def __init__(self, operations: _Optional[_Iterable[_Union[OperationSpec, _Mapping]]] = ...) -> None: ...
