from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BoundaryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOUNDARY_MODE_UNSPECIFIED: _ClassVar[BoundaryMode]
    BOUNDARY_MODE_NEAREST: _ClassVar[BoundaryMode]
    BOUNDARY_MODE_REFLECT: _ClassVar[BoundaryMode]
    BOUNDARY_MODE_MIRROR: _ClassVar[BoundaryMode]
    BOUNDARY_MODE_CONSTANT: _ClassVar[BoundaryMode]
    BOUNDARY_MODE_WRAP: _ClassVar[BoundaryMode]

class EdgeOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDGE_OPERATOR_UNSPECIFIED: _ClassVar[EdgeOperator]
    EDGE_OPERATOR_SOBEL: _ClassVar[EdgeOperator]
    EDGE_OPERATOR_PREWITT: _ClassVar[EdgeOperator]
    EDGE_OPERATOR_SCHARR: _ClassVar[EdgeOperator]

class BandpassMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BANDPASS_METHOD_UNSPECIFIED: _ClassVar[BandpassMethod]
    BANDPASS_METHOD_DOG: _ClassVar[BandpassMethod]
    BANDPASS_METHOD_BUTTERWORTH: _ClassVar[BandpassMethod]

class Projection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROJECTION_UNSPECIFIED: _ClassVar[Projection]
    PROJECTION_MAX: _ClassVar[Projection]
    PROJECTION_MIN: _ClassVar[Projection]
    PROJECTION_MEAN: _ClassVar[Projection]
    PROJECTION_SUM: _ClassVar[Projection]
BOUNDARY_MODE_UNSPECIFIED: BoundaryMode
BOUNDARY_MODE_NEAREST: BoundaryMode
BOUNDARY_MODE_REFLECT: BoundaryMode
BOUNDARY_MODE_MIRROR: BoundaryMode
BOUNDARY_MODE_CONSTANT: BoundaryMode
BOUNDARY_MODE_WRAP: BoundaryMode
EDGE_OPERATOR_UNSPECIFIED: EdgeOperator
EDGE_OPERATOR_SOBEL: EdgeOperator
EDGE_OPERATOR_PREWITT: EdgeOperator
EDGE_OPERATOR_SCHARR: EdgeOperator
BANDPASS_METHOD_UNSPECIFIED: BandpassMethod
BANDPASS_METHOD_DOG: BandpassMethod
BANDPASS_METHOD_BUTTERWORTH: BandpassMethod
PROJECTION_UNSPECIFIED: Projection
PROJECTION_MAX: Projection
PROJECTION_MIN: Projection
PROJECTION_MEAN: Projection
PROJECTION_SUM: Projection

class GaussianOp(_message.Message):
    __slots__ = ("sigma", "sigma_mm", "truncate", "mode", "cval")
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    SIGMA_MM_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CVAL_FIELD_NUMBER: _ClassVar[int]
    sigma: _containers.RepeatedScalarFieldContainer[float]
    sigma_mm: _containers.RepeatedScalarFieldContainer[float]
    truncate: float
    mode: BoundaryMode
    cval: float
    def __init__(self, sigma: _Optional[_Iterable[float]] = ..., sigma_mm: _Optional[_Iterable[float]] = ..., truncate: _Optional[float] = ..., mode: _Optional[_Union[BoundaryMode, str]] = ..., cval: _Optional[float] = ...) -> None: ...

class MeanOp(_message.Message):
    __slots__ = ("size", "size_mm", "mode", "cval")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIZE_MM_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CVAL_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    size_mm: _containers.RepeatedScalarFieldContainer[float]
    mode: BoundaryMode
    cval: float
    def __init__(self, size: _Optional[_Iterable[int]] = ..., size_mm: _Optional[_Iterable[float]] = ..., mode: _Optional[_Union[BoundaryMode, str]] = ..., cval: _Optional[float] = ...) -> None: ...

class MedianOp(_message.Message):
    __slots__ = ("size", "size_mm", "mode", "cval")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIZE_MM_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CVAL_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    size_mm: _containers.RepeatedScalarFieldContainer[float]
    mode: BoundaryMode
    cval: float
    def __init__(self, size: _Optional[_Iterable[int]] = ..., size_mm: _Optional[_Iterable[float]] = ..., mode: _Optional[_Union[BoundaryMode, str]] = ..., cval: _Optional[float] = ...) -> None: ...

class LaplacianOp(_message.Message):
    __slots__ = ("sigma", "sigma_mm", "truncate", "mode", "cval")
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    SIGMA_MM_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CVAL_FIELD_NUMBER: _ClassVar[int]
    sigma: _containers.RepeatedScalarFieldContainer[float]
    sigma_mm: _containers.RepeatedScalarFieldContainer[float]
    truncate: float
    mode: BoundaryMode
    cval: float
    def __init__(self, sigma: _Optional[_Iterable[float]] = ..., sigma_mm: _Optional[_Iterable[float]] = ..., truncate: _Optional[float] = ..., mode: _Optional[_Union[BoundaryMode, str]] = ..., cval: _Optional[float] = ...) -> None: ...

class GradientOp(_message.Message):
    __slots__ = ("axis", "order", "per_mm", "mode", "cval")
    AXIS_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PER_MM_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CVAL_FIELD_NUMBER: _ClassVar[int]
    axis: int
    order: int
    per_mm: bool
    mode: BoundaryMode
    cval: float
    def __init__(self, axis: _Optional[int] = ..., order: _Optional[int] = ..., per_mm: _Optional[bool] = ..., mode: _Optional[_Union[BoundaryMode, str]] = ..., cval: _Optional[float] = ...) -> None: ...

class EdgeOp(_message.Message):
    __slots__ = ("operator", "axes", "mode", "cval")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    AXES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CVAL_FIELD_NUMBER: _ClassVar[int]
    operator: EdgeOperator
    axes: _containers.RepeatedScalarFieldContainer[int]
    mode: BoundaryMode
    cval: float
    def __init__(self, operator: _Optional[_Union[EdgeOperator, str]] = ..., axes: _Optional[_Iterable[int]] = ..., mode: _Optional[_Union[BoundaryMode, str]] = ..., cval: _Optional[float] = ...) -> None: ...

class BandpassOp(_message.Message):
    __slots__ = ("low_cutoff", "low_cutoff_mm", "high_cutoff", "high_cutoff_mm", "method", "order", "truncate", "mode", "cval")
    LOW_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    LOW_CUTOFF_MM_FIELD_NUMBER: _ClassVar[int]
    HIGH_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    HIGH_CUTOFF_MM_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CVAL_FIELD_NUMBER: _ClassVar[int]
    low_cutoff: float
    low_cutoff_mm: float
    high_cutoff: float
    high_cutoff_mm: float
    method: BandpassMethod
    order: int
    truncate: float
    mode: BoundaryMode
    cval: float
    def __init__(self, low_cutoff: _Optional[float] = ..., low_cutoff_mm: _Optional[float] = ..., high_cutoff: _Optional[float] = ..., high_cutoff_mm: _Optional[float] = ..., method: _Optional[_Union[BandpassMethod, str]] = ..., order: _Optional[int] = ..., truncate: _Optional[float] = ..., mode: _Optional[_Union[BoundaryMode, str]] = ..., cval: _Optional[float] = ...) -> None: ...

class ProjectOp(_message.Message):
    __slots__ = ("kind", "axis", "thickness", "thickness_mm", "step", "step_mm")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AXIS_FIELD_NUMBER: _ClassVar[int]
    THICKNESS_FIELD_NUMBER: _ClassVar[int]
    THICKNESS_MM_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_MM_FIELD_NUMBER: _ClassVar[int]
    kind: Projection
    axis: int
    thickness: float
    thickness_mm: float
    step: float
    step_mm: float
    def __init__(self, kind: _Optional[_Union[Projection, str]] = ..., axis: _Optional[int] = ..., thickness: _Optional[float] = ..., thickness_mm: _Optional[float] = ..., step: _Optional[float] = ..., step_mm: _Optional[float] = ...) -> None: ...

class SubtractOp(_message.Message):
    __slots__ = ("operand", "weight", "mask_frame", "logarithmic")
    OPERAND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MASK_FRAME_FIELD_NUMBER: _ClassVar[int]
    LOGARITHMIC_FIELD_NUMBER: _ClassVar[int]
    operand: int
    weight: float
    mask_frame: int
    logarithmic: bool
    def __init__(self, operand: _Optional[int] = ..., weight: _Optional[float] = ..., mask_frame: _Optional[int] = ..., logarithmic: _Optional[bool] = ...) -> None: ...

class AddOp(_message.Message):
    __slots__ = ("operand", "weight")
    OPERAND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    operand: int
    weight: float
    def __init__(self, operand: _Optional[int] = ..., weight: _Optional[float] = ...) -> None: ...

class PackageOp(_message.Message):
    __slots__ = ("package", "version", "operation", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    package: str
    version: str
    operation: str
    params: _containers.ScalarMap[str, float]
    def __init__(self, package: _Optional[str] = ..., version: _Optional[str] = ..., operation: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("gaussian", "mean", "median", "laplacian", "gradient", "edge", "bandpass", "project", "subtract", "add", "package")
    GAUSSIAN_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    LAPLACIAN_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    EDGE_FIELD_NUMBER: _ClassVar[int]
    BANDPASS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SUBTRACT_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    gaussian: GaussianOp
    mean: MeanOp
    median: MedianOp
    laplacian: LaplacianOp
    gradient: GradientOp
    edge: EdgeOp
    bandpass: BandpassOp
    project: ProjectOp
    subtract: SubtractOp
    add: AddOp
    package: PackageOp
    def __init__(self, gaussian: _Optional[_Union[GaussianOp, _Mapping]] = ..., mean: _Optional[_Union[MeanOp, _Mapping]] = ..., median: _Optional[_Union[MedianOp, _Mapping]] = ..., laplacian: _Optional[_Union[LaplacianOp, _Mapping]] = ..., gradient: _Optional[_Union[GradientOp, _Mapping]] = ..., edge: _Optional[_Union[EdgeOp, _Mapping]] = ..., bandpass: _Optional[_Union[BandpassOp, _Mapping]] = ..., project: _Optional[_Union[ProjectOp, _Mapping]] = ..., subtract: _Optional[_Union[SubtractOp, _Mapping]] = ..., add: _Optional[_Union[AddOp, _Mapping]] = ..., package: _Optional[_Union[PackageOp, _Mapping]] = ...) -> None: ...
