from medcompute.proto.v1 import image_pb2 as _image_pb2
from medcompute.proto.v1 import processing_pb2 as _processing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_RECEIVING: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FETCHED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FAILED: _ClassVar[DeliveryState]
    DELIVERY_STATE_NONE: _ClassVar[DeliveryState]

class UsageGrouping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GROUPING_UNSPECIFIED: _ClassVar[UsageGrouping]
    USAGE_GROUPING_DAY: _ClassVar[UsageGrouping]
    USAGE_GROUPING_OPERATION: _ClassVar[UsageGrouping]
    USAGE_GROUPING_DEVICE: _ClassVar[UsageGrouping]
    USAGE_GROUPING_SUBSCRIBER: _ClassVar[UsageGrouping]
    USAGE_GROUPING_NONE: _ClassVar[UsageGrouping]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_RECEIVING: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_FETCHED: DeliveryState
DELIVERY_STATE_FAILED: DeliveryState
DELIVERY_STATE_NONE: DeliveryState
USAGE_GROUPING_UNSPECIFIED: UsageGrouping
USAGE_GROUPING_DAY: UsageGrouping
USAGE_GROUPING_OPERATION: UsageGrouping
USAGE_GROUPING_DEVICE: UsageGrouping
USAGE_GROUPING_SUBSCRIBER: UsageGrouping
USAGE_GROUPING_NONE: UsageGrouping

class SubmitHeader(_message.Message):
    __slots__ = ("process", "idempotency_key", "destination", "label")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    process: _processing_pb2.ProcessHeader
    idempotency_key: str
    destination: str
    label: str
    def __init__(self, process: _Optional[_Union[_processing_pb2.ProcessHeader, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., destination: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SubmitHeader
    chunk: _image_pb2.Chunk
    def __init__(self, header: _Optional[_Union[SubmitHeader, _Mapping]] = ..., chunk: _Optional[_Union[_image_pb2.Chunk, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("job", "existing")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    job: JobInfo
    existing: bool
    def __init__(self, job: _Optional[_Union[JobInfo, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "subscriber", "state", "operations", "destination", "delivery", "label", "idempotency_key", "created_at", "queued_at", "started_at", "finished_at", "delivered_at", "fetched_at", "worker", "error", "error_code", "platform_fault", "progress", "result_available", "asynchronous")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    FETCHED_AT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FAULT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ASYNCHRONOUS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    subscriber: str
    state: JobState
    operations: _containers.RepeatedScalarFieldContainer[str]
    destination: str
    delivery: DeliveryState
    label: str
    idempotency_key: str
    created_at: float
    queued_at: float
    started_at: float
    finished_at: float
    delivered_at: float
    fetched_at: float
    worker: str
    error: str
    error_code: str
    platform_fault: bool
    progress: float
    result_available: bool
    asynchronous: bool
    def __init__(self, job_id: _Optional[str] = ..., subscriber: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., operations: _Optional[_Iterable[str]] = ..., destination: _Optional[str] = ..., delivery: _Optional[_Union[DeliveryState, str]] = ..., label: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., created_at: _Optional[float] = ..., queued_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., delivered_at: _Optional[float] = ..., fetched_at: _Optional[float] = ..., worker: _Optional[str] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ..., platform_fault: _Optional[bool] = ..., progress: _Optional[float] = ..., result_available: _Optional[bool] = ..., asynchronous: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: JobInfo
    def __init__(self, job: _Optional[_Union[JobInfo, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job", "message")
    JOB_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job: JobInfo
    message: str
    def __init__(self, job: _Optional[_Union[JobInfo, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _processing_pb2.ResultHeader
    chunk: _image_pb2.Chunk
    def __init__(self, header: _Optional[_Union[_processing_pb2.ResultHeader, _Mapping]] = ..., chunk: _Optional[_Union[_image_pb2.Chunk, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: JobInfo
    def __init__(self, job: _Optional[_Union[JobInfo, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "since", "until", "operation", "label", "page_size", "page_token", "subscriber")
    STATES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    since: float
    until: float
    operation: str
    label: str
    page_size: int
    page_token: str
    subscriber: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., since: _Optional[float] = ..., until: _Optional[float] = ..., operation: _Optional[str] = ..., label: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., subscriber: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("seq", "job_id", "sender", "operations", "label", "delivered_at", "fetched_at", "output")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    FETCHED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    job_id: str
    sender: str
    operations: _containers.RepeatedScalarFieldContainer[str]
    label: str
    delivered_at: float
    fetched_at: float
    output: _image_pb2.ImageDescriptor
    def __init__(self, seq: _Optional[int] = ..., job_id: _Optional[str] = ..., sender: _Optional[str] = ..., operations: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., delivered_at: _Optional[float] = ..., fetched_at: _Optional[float] = ..., output: _Optional[_Union[_image_pb2.ImageDescriptor, _Mapping]] = ...) -> None: ...

class ListInboxRequest(_message.Message):
    __slots__ = ("unfetched_only", "after_seq", "page_size")
    UNFETCHED_ONLY_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    unfetched_only: bool
    after_seq: int
    page_size: int
    def __init__(self, unfetched_only: _Optional[bool] = ..., after_seq: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListInboxResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class WatchInboxRequest(_message.Message):
    __slots__ = ("after_seq", "new_only")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEW_ONLY_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    new_only: bool
    def __init__(self, after_seq: _Optional[int] = ..., new_only: _Optional[bool] = ...) -> None: ...

class WatchInboxResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("since", "until", "group_by", "subscriber", "all_subscribers", "include_records")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ALL_SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RECORDS_FIELD_NUMBER: _ClassVar[int]
    since: float
    until: float
    group_by: UsageGrouping
    subscriber: str
    all_subscribers: bool
    include_records: bool
    def __init__(self, since: _Optional[float] = ..., until: _Optional[float] = ..., group_by: _Optional[_Union[UsageGrouping, str]] = ..., subscriber: _Optional[str] = ..., all_subscribers: _Optional[bool] = ..., include_records: _Optional[bool] = ...) -> None: ...

class UsageTotals(_message.Message):
    __slots__ = ("jobs", "billable_jobs", "failed_jobs", "platform_failures", "images", "voxels", "bytes_in", "bytes_out", "cpu_seconds", "gpu_seconds", "energy_joules", "fallbacks", "wall_seconds", "queue_seconds", "deliveries")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    BILLABLE_JOBS_FIELD_NUMBER: _ClassVar[int]
    FAILED_JOBS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    VOXELS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_JOULES_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    jobs: int
    billable_jobs: int
    failed_jobs: int
    platform_failures: int
    images: int
    voxels: int
    bytes_in: int
    bytes_out: int
    cpu_seconds: float
    gpu_seconds: float
    energy_joules: float
    fallbacks: int
    wall_seconds: float
    queue_seconds: float
    deliveries: int
    def __init__(self, jobs: _Optional[int] = ..., billable_jobs: _Optional[int] = ..., failed_jobs: _Optional[int] = ..., platform_failures: _Optional[int] = ..., images: _Optional[int] = ..., voxels: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., cpu_seconds: _Optional[float] = ..., gpu_seconds: _Optional[float] = ..., energy_joules: _Optional[float] = ..., fallbacks: _Optional[int] = ..., wall_seconds: _Optional[float] = ..., queue_seconds: _Optional[float] = ..., deliveries: _Optional[int] = ...) -> None: ...

class UsageGroup(_message.Message):
    __slots__ = ("key", "totals")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    key: str
    totals: UsageTotals
    def __init__(self, key: _Optional[str] = ..., totals: _Optional[_Union[UsageTotals, _Mapping]] = ...) -> None: ...

class StorageUsage(_message.Message):
    __slots__ = ("subscriber", "gigabyte_days", "bytes_now")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    GIGABYTE_DAYS_FIELD_NUMBER: _ClassVar[int]
    BYTES_NOW_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    gigabyte_days: float
    bytes_now: int
    def __init__(self, subscriber: _Optional[str] = ..., gigabyte_days: _Optional[float] = ..., bytes_now: _Optional[int] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("totals", "groups", "records", "storage", "since", "until")
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    totals: UsageTotals
    groups: _containers.RepeatedCompositeFieldContainer[UsageGroup]
    records: _containers.RepeatedCompositeFieldContainer[_processing_pb2.UsageRecord]
    storage: _containers.RepeatedCompositeFieldContainer[StorageUsage]
    since: float
    until: float
    def __init__(self, totals: _Optional[_Union[UsageTotals, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[UsageGroup, _Mapping]]] = ..., records: _Optional[_Iterable[_Union[_processing_pb2.UsageRecord, _Mapping]]] = ..., storage: _Optional[_Iterable[_Union[StorageUsage, _Mapping]]] = ..., since: _Optional[float] = ..., until: _Optional[float] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("month", "subscriber", "all_subscribers")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ALL_SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    month: str
    subscriber: str
    all_subscribers: bool
    def __init__(self, month: _Optional[str] = ..., subscriber: _Optional[str] = ..., all_subscribers: _Optional[bool] = ...) -> None: ...

class InvoiceLine(_message.Message):
    __slots__ = ("subscriber", "item", "quantity", "unit_price", "amount", "package")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    item: str
    quantity: float
    unit_price: str
    amount: str
    package: str
    def __init__(self, subscriber: _Optional[str] = ..., item: _Optional[str] = ..., quantity: _Optional[float] = ..., unit_price: _Optional[str] = ..., amount: _Optional[str] = ..., package: _Optional[str] = ...) -> None: ...

class SubscriberInvoice(_message.Message):
    __slots__ = ("subscriber", "lines", "total", "usage", "gigabyte_days", "excluded_platform_failures", "cold_gigabyte_days", "examinations_fetched")
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    GIGABYTE_DAYS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_PLATFORM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    COLD_GIGABYTE_DAYS_FIELD_NUMBER: _ClassVar[int]
    EXAMINATIONS_FETCHED_FIELD_NUMBER: _ClassVar[int]
    subscriber: str
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    total: str
    usage: UsageTotals
    gigabyte_days: float
    excluded_platform_failures: int
    cold_gigabyte_days: float
    examinations_fetched: int
    def __init__(self, subscriber: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., total: _Optional[str] = ..., usage: _Optional[_Union[UsageTotals, _Mapping]] = ..., gigabyte_days: _Optional[float] = ..., excluded_platform_failures: _Optional[int] = ..., cold_gigabyte_days: _Optional[float] = ..., examinations_fetched: _Optional[int] = ...) -> None: ...

class GetInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("month", "currency", "tariff", "period_start", "period_end", "subscribers", "total")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TARIFF_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    month: str
    currency: str
    tariff: str
    period_start: float
    period_end: float
    subscribers: _containers.RepeatedCompositeFieldContainer[SubscriberInvoice]
    total: str
    def __init__(self, month: _Optional[str] = ..., currency: _Optional[str] = ..., tariff: _Optional[str] = ..., period_start: _Optional[float] = ..., period_end: _Optional[float] = ..., subscribers: _Optional[_Iterable[_Union[SubscriberInvoice, _Mapping]]] = ..., total: _Optional[str] = ...) -> None: ...
