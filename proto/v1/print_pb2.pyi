from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrintImageRequest(_message.Message):
    __slots__ = ("image_id", "printer", "display_format", "film_size", "orientation", "copies", "slices", "mip", "bits", "medium_type")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    FILM_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    MIP_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    MEDIUM_TYPE_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    printer: str
    display_format: str
    film_size: str
    orientation: str
    copies: int
    slices: _containers.RepeatedScalarFieldContainer[int]
    mip: bool
    bits: int
    medium_type: str
    def __init__(self, image_id: _Optional[str] = ..., printer: _Optional[str] = ..., display_format: _Optional[str] = ..., film_size: _Optional[str] = ..., orientation: _Optional[str] = ..., copies: _Optional[int] = ..., slices: _Optional[_Iterable[int]] = ..., mip: _Optional[bool] = ..., bits: _Optional[int] = ..., medium_type: _Optional[str] = ...) -> None: ...

class PrintJob(_message.Message):
    __slots__ = ("job_id", "image_id", "printer", "display_format", "film_size", "orientation", "copies", "bits", "slices", "mip", "status", "reason", "printer_status", "printer_status_info", "sheets", "created_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    FILM_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    MIP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRINTER_STATUS_FIELD_NUMBER: _ClassVar[int]
    PRINTER_STATUS_INFO_FIELD_NUMBER: _ClassVar[int]
    SHEETS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    image_id: str
    printer: str
    display_format: str
    film_size: str
    orientation: str
    copies: int
    bits: int
    slices: _containers.RepeatedScalarFieldContainer[int]
    mip: bool
    status: str
    reason: str
    printer_status: str
    printer_status_info: str
    sheets: int
    created_at: float
    def __init__(self, job_id: _Optional[str] = ..., image_id: _Optional[str] = ..., printer: _Optional[str] = ..., display_format: _Optional[str] = ..., film_size: _Optional[str] = ..., orientation: _Optional[str] = ..., copies: _Optional[int] = ..., bits: _Optional[int] = ..., slices: _Optional[_Iterable[int]] = ..., mip: _Optional[bool] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., printer_status: _Optional[str] = ..., printer_status_info: _Optional[str] = ..., sheets: _Optional[int] = ..., created_at: _Optional[float] = ...) -> None: ...

class PrintImageResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: PrintJob
    def __init__(self, job: _Optional[_Union[PrintJob, _Mapping]] = ...) -> None: ...

class ListPrintJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPrintJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[PrintJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[PrintJob, _Mapping]]] = ...) -> None: ...
