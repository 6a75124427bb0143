from medcompute.proto.v1 import image_pb2 as _image_pb2
from medcompute.proto.v1 import jobs_pb2 as _jobs_pb2
from medcompute.proto.v1 import processing_pb2 as _processing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessBatchHeader(_message.Message):
    __slots__ = ("process", "inputs", "input_regions", "output_regions")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_REGIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGIONS_FIELD_NUMBER: _ClassVar[int]
    process: _processing_pb2.ProcessHeader
    inputs: _containers.RepeatedCompositeFieldContainer[_image_pb2.ImageSource]
    input_regions: _containers.RepeatedCompositeFieldContainer[_processing_pb2.SharedRegion]
    output_regions: _containers.RepeatedCompositeFieldContainer[_processing_pb2.SharedRegion]
    def __init__(self, process: _Optional[_Union[_processing_pb2.ProcessHeader, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[_image_pb2.ImageSource, _Mapping]]] = ..., input_regions: _Optional[_Iterable[_Union[_processing_pb2.SharedRegion, _Mapping]]] = ..., output_regions: _Optional[_Iterable[_Union[_processing_pb2.SharedRegion, _Mapping]]] = ...) -> None: ...

class BatchChunk(_message.Message):
    __slots__ = ("item", "chunk")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    item: int
    chunk: _image_pb2.Chunk
    def __init__(self, item: _Optional[int] = ..., chunk: _Optional[_Union[_image_pb2.Chunk, _Mapping]] = ...) -> None: ...

class ProcessBatchRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ProcessBatchHeader
    chunk: BatchChunk
    def __init__(self, header: _Optional[_Union[ProcessBatchHeader, _Mapping]] = ..., chunk: _Optional[_Union[BatchChunk, _Mapping]] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("item", "header")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    item: int
    header: _processing_pb2.ResultHeader
    def __init__(self, item: _Optional[int] = ..., header: _Optional[_Union[_processing_pb2.ResultHeader, _Mapping]] = ...) -> None: ...

class BatchItemFailure(_message.Message):
    __slots__ = ("item", "job_id", "code", "message", "field")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    item: int
    job_id: str
    code: str
    message: str
    field: str
    def __init__(self, item: _Optional[int] = ..., job_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class ProcessBatchResponse(_message.Message):
    __slots__ = ("result", "chunk", "failure")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    result: BatchItemResult
    chunk: BatchChunk
    failure: BatchItemFailure
    def __init__(self, result: _Optional[_Union[BatchItemResult, _Mapping]] = ..., chunk: _Optional[_Union[BatchChunk, _Mapping]] = ..., failure: _Optional[_Union[BatchItemFailure, _Mapping]] = ...) -> None: ...

class SubmitBatchHeader(_message.Message):
    __slots__ = ("submit", "inputs")
    SUBMIT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    submit: _jobs_pb2.SubmitHeader
    inputs: _containers.RepeatedCompositeFieldContainer[_image_pb2.ImageSource]
    def __init__(self, submit: _Optional[_Union[_jobs_pb2.SubmitHeader, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[_image_pb2.ImageSource, _Mapping]]] = ...) -> None: ...

class SubmitBatchRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SubmitBatchHeader
    chunk: BatchChunk
    def __init__(self, header: _Optional[_Union[SubmitBatchHeader, _Mapping]] = ..., chunk: _Optional[_Union[BatchChunk, _Mapping]] = ...) -> None: ...

class SubmitBatchItem(_message.Message):
    __slots__ = ("item", "job", "existing", "failure")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    item: int
    job: _jobs_pb2.JobInfo
    existing: bool
    failure: BatchItemFailure
    def __init__(self, item: _Optional[int] = ..., job: _Optional[_Union[_jobs_pb2.JobInfo, _Mapping]] = ..., existing: _Optional[bool] = ..., failure: _Optional[_Union[BatchItemFailure, _Mapping]] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SubmitBatchItem]
    def __init__(self, items: _Optional[_Iterable[_Union[SubmitBatchItem, _Mapping]]] = ...) -> None: ...
