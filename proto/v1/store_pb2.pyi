from medcompute.proto.v1 import image_pb2 as _image_pb2
from medcompute.proto.v1 import processing_pb2 as _processing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_KIND_UNSPECIFIED: _ClassVar[ImageKind]
    IMAGE_KIND_ORIGINAL: _ClassVar[ImageKind]
    IMAGE_KIND_DERIVED: _ClassVar[ImageKind]

class StoredFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORED_FORMAT_UNSPECIFIED: _ClassVar[StoredFormat]
    STORED_FORMAT_DICOM: _ClassVar[StoredFormat]
    STORED_FORMAT_VOXELS: _ClassVar[StoredFormat]
IMAGE_KIND_UNSPECIFIED: ImageKind
IMAGE_KIND_ORIGINAL: ImageKind
IMAGE_KIND_DERIVED: ImageKind
STORED_FORMAT_UNSPECIFIED: StoredFormat
STORED_FORMAT_DICOM: StoredFormat
STORED_FORMAT_VOXELS: StoredFormat

class ImagingConditions(_message.Message):
    __slots__ = ("repetition_time_ms", "echo_time_ms", "inversion_time_ms", "flip_angle_deg", "field_strength_t", "kvp", "tube_current_ma", "exposure_mas", "exposure_time_ms", "pitch", "slice_thickness_mm", "other")
    class OtherEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REPETITION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ECHO_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    INVERSION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FLIP_ANGLE_DEG_FIELD_NUMBER: _ClassVar[int]
    FIELD_STRENGTH_T_FIELD_NUMBER: _ClassVar[int]
    KVP_FIELD_NUMBER: _ClassVar[int]
    TUBE_CURRENT_MA_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_MAS_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PITCH_FIELD_NUMBER: _ClassVar[int]
    SLICE_THICKNESS_MM_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    repetition_time_ms: float
    echo_time_ms: float
    inversion_time_ms: float
    flip_angle_deg: float
    field_strength_t: float
    kvp: float
    tube_current_ma: float
    exposure_mas: float
    exposure_time_ms: float
    pitch: float
    slice_thickness_mm: float
    other: _containers.ScalarMap[str, str]
    def __init__(self, repetition_time_ms: _Optional[float] = ..., echo_time_ms: _Optional[float] = ..., inversion_time_ms: _Optional[float] = ..., flip_angle_deg: _Optional[float] = ..., field_strength_t: _Optional[float] = ..., kvp: _Optional[float] = ..., tube_current_ma: _Optional[float] = ..., exposure_mas: _Optional[float] = ..., exposure_time_ms: _Optional[float] = ..., pitch: _Optional[float] = ..., slice_thickness_mm: _Optional[float] = ..., other: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImageMetadata(_message.Message):
    __slots__ = ("modality", "patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uids", "acquisition_date", "manufacturer", "device_model", "conditions", "description", "window_center", "window_width")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UIDS_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_DATE_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MODEL_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CENTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_WIDTH_FIELD_NUMBER: _ClassVar[int]
    modality: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: _containers.RepeatedScalarFieldContainer[str]
    acquisition_date: str
    manufacturer: str
    device_model: str
    conditions: ImagingConditions
    description: str
    window_center: float
    window_width: float
    def __init__(self, modality: _Optional[str] = ..., patient_id: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., sop_instance_uids: _Optional[_Iterable[str]] = ..., acquisition_date: _Optional[str] = ..., manufacturer: _Optional[str] = ..., device_model: _Optional[str] = ..., conditions: _Optional[_Union[ImagingConditions, _Mapping]] = ..., description: _Optional[str] = ..., window_center: _Optional[float] = ..., window_width: _Optional[float] = ...) -> None: ...

class StoredImage(_message.Message):
    __slots__ = ("image_id", "owner", "kind", "metadata", "shape", "dtype", "spacing_mm", "size", "crc32", "dicom_files", "stored_bytes", "created_at", "expires_at", "source_image_id", "operand_image_ids", "operations", "derivation", "job_id", "versions", "tier")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SPACING_MM_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    DICOM_FILES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERAND_IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    owner: str
    kind: ImageKind
    metadata: ImageMetadata
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: _image_pb2.DataType
    spacing_mm: _containers.RepeatedScalarFieldContainer[float]
    size: int
    crc32: int
    dicom_files: int
    stored_bytes: int
    created_at: float
    expires_at: float
    source_image_id: str
    operand_image_ids: _containers.RepeatedScalarFieldContainer[str]
    operations: _containers.RepeatedScalarFieldContainer[str]
    derivation: str
    job_id: str
    versions: _containers.RepeatedCompositeFieldContainer[ImageVersion]
    tier: str
    def __init__(self, image_id: _Optional[str] = ..., owner: _Optional[str] = ..., kind: _Optional[_Union[ImageKind, str]] = ..., metadata: _Optional[_Union[ImageMetadata, _Mapping]] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[_image_pb2.DataType, str]] = ..., spacing_mm: _Optional[_Iterable[float]] = ..., size: _Optional[int] = ..., crc32: _Optional[int] = ..., dicom_files: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., created_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., source_image_id: _Optional[str] = ..., operand_image_ids: _Optional[_Iterable[str]] = ..., operations: _Optional[_Iterable[str]] = ..., derivation: _Optional[str] = ..., job_id: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[ImageVersion, _Mapping]]] = ..., tier: _Optional[str] = ...) -> None: ...

class ImageVersion(_message.Message):
    __slots__ = ("name", "purpose", "lossless", "transfer_syntax_uid", "configured_ratio", "compression_ratio", "max_error", "psnr_db", "stored_bytes", "resolution_levels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LOSSLESS_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SYNTAX_UID_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_RATIO_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_FIELD_NUMBER: _ClassVar[int]
    PSNR_DB_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_LEVELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    purpose: str
    lossless: bool
    transfer_syntax_uid: str
    configured_ratio: float
    compression_ratio: float
    max_error: float
    psnr_db: float
    stored_bytes: int
    resolution_levels: int
    def __init__(self, name: _Optional[str] = ..., purpose: _Optional[str] = ..., lossless: _Optional[bool] = ..., transfer_syntax_uid: _Optional[str] = ..., configured_ratio: _Optional[float] = ..., compression_ratio: _Optional[float] = ..., max_error: _Optional[float] = ..., psnr_db: _Optional[float] = ..., stored_bytes: _Optional[int] = ..., resolution_levels: _Optional[int] = ...) -> None: ...

class RegisterHeader(_message.Message):
    __slots__ = ("image", "metadata", "retention_seconds")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    image: _image_pb2.ImageDescriptor
    metadata: ImageMetadata
    retention_seconds: int
    def __init__(self, image: _Optional[_Union[_image_pb2.ImageDescriptor, _Mapping]] = ..., metadata: _Optional[_Union[ImageMetadata, _Mapping]] = ..., retention_seconds: _Optional[int] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: RegisterHeader
    chunk: _image_pb2.Chunk
    def __init__(self, header: _Optional[_Union[RegisterHeader, _Mapping]] = ..., chunk: _Optional[_Union[_image_pb2.Chunk, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("image", "existing", "differing_fields")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_FIELDS_FIELD_NUMBER: _ClassVar[int]
    image: StoredImage
    existing: bool
    differing_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[_Union[StoredImage, _Mapping]] = ..., existing: _Optional[bool] = ..., differing_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class FindRequest(_message.Message):
    __slots__ = ("patient_id", "study_instance_uid", "series_instance_uid", "modality", "date_from", "date_to", "registered_by", "kind", "source_image_id", "page_size", "page_token")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    DATE_FROM_FIELD_NUMBER: _ClassVar[int]
    DATE_TO_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    date_from: str
    date_to: str
    registered_by: str
    kind: ImageKind
    source_image_id: str
    page_size: int
    page_token: str
    def __init__(self, patient_id: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., modality: _Optional[str] = ..., date_from: _Optional[str] = ..., date_to: _Optional[str] = ..., registered_by: _Optional[str] = ..., kind: _Optional[_Union[ImageKind, str]] = ..., source_image_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FindResponse(_message.Message):
    __slots__ = ("images", "next_page_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[StoredImage]
    next_page_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[StoredImage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("image_id", "format", "compression", "header_only", "version", "resolution_level", "output_region")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    HEADER_ONLY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGION_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    format: StoredFormat
    compression: _image_pb2.Compression
    header_only: bool
    version: str
    resolution_level: int
    output_region: _processing_pb2.SharedRegion
    def __init__(self, image_id: _Optional[str] = ..., format: _Optional[_Union[StoredFormat, str]] = ..., compression: _Optional[_Union[_image_pb2.Compression, str]] = ..., header_only: _Optional[bool] = ..., version: _Optional[str] = ..., resolution_level: _Optional[int] = ..., output_region: _Optional[_Union[_processing_pb2.SharedRegion, _Mapping]] = ...) -> None: ...

class GetHeader(_message.Message):
    __slots__ = ("image", "data", "version", "resolution_level")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    image: StoredImage
    data: _image_pb2.ImageDescriptor
    version: ImageVersion
    resolution_level: int
    def __init__(self, image: _Optional[_Union[StoredImage, _Mapping]] = ..., data: _Optional[_Union[_image_pb2.ImageDescriptor, _Mapping]] = ..., version: _Optional[_Union[ImageVersion, _Mapping]] = ..., resolution_level: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: GetHeader
    chunk: _image_pb2.Chunk
    def __init__(self, header: _Optional[_Union[GetHeader, _Mapping]] = ..., chunk: _Optional[_Union[_image_pb2.Chunk, _Mapping]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("image_id",)
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    def __init__(self, image_id: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("freed_bytes", "derived_image_ids")
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DERIVED_IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    freed_bytes: int
    derived_image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, freed_bytes: _Optional[int] = ..., derived_image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PreviewRequest(_message.Message):
    __slots__ = ("image_id", "max_size", "window_center", "window_width")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CENTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_WIDTH_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    max_size: int
    window_center: float
    window_width: float
    def __init__(self, image_id: _Optional[str] = ..., max_size: _Optional[int] = ..., window_center: _Optional[float] = ..., window_width: _Optional[float] = ...) -> None: ...

class PreviewResponse(_message.Message):
    __slots__ = ("png", "width", "height", "rendering")
    PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RENDERING_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    width: int
    height: int
    rendering: str
    def __init__(self, png: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., rendering: _Optional[str] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyProblem(_message.Message):
    __slots__ = ("image_id", "blob", "problem")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    blob: str
    problem: str
    def __init__(self, image_id: _Optional[str] = ..., blob: _Optional[str] = ..., problem: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("images", "blobs", "bytes", "problems", "unreferenced_blobs")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    UNREFERENCED_BLOBS_FIELD_NUMBER: _ClassVar[int]
    images: int
    blobs: int
    bytes: int
    problems: _containers.RepeatedCompositeFieldContainer[VerifyProblem]
    unreferenced_blobs: int
    def __init__(self, images: _Optional[int] = ..., blobs: _Optional[int] = ..., bytes: _Optional[int] = ..., problems: _Optional[_Iterable[_Union[VerifyProblem, _Mapping]]] = ..., unreferenced_blobs: _Optional[int] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: str
    def __init__(self, destination: _Optional[str] = ...) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ("destination", "images", "blobs", "bytes")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    destination: str
    images: int
    blobs: int
    bytes: int
    def __init__(self, destination: _Optional[str] = ..., images: _Optional[int] = ..., blobs: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class PurgeRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class PurgeResponse(_message.Message):
    __slots__ = ("image_ids", "freed_bytes", "blobs_removed")
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOBS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    freed_bytes: int
    blobs_removed: int
    def __init__(self, image_ids: _Optional[_Iterable[str]] = ..., freed_bytes: _Optional[int] = ..., blobs_removed: _Optional[int] = ...) -> None: ...

class AdoptRequest(_message.Message):
    __slots__ = ("subscriber", "from_subscriber")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    FROM_SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    from_subscriber: str
    def __init__(self, subscriber: _Optional[str] = ..., from_subscriber: _Optional[str] = ...) -> None: ...

class AdoptResponse(_message.Message):
    __slots__ = ("image_ids",)
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image_ids: _Optional[_Iterable[str]] = ...) -> None: ...
