"""What the server hands a Dask worker and what it hands back: the inputs, the job, a
stack of images, and their results (plain data, pickled by Dask; tasks.py runs them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medcompute.server.worker.slabs import Region

__all__ = ["InputSpec", "TaskSpec", "StackSpec", "StackResult", "TaskResult"]


@dataclass(frozen=True)
class InputSpec:
    """An image spooled to ``path``: a raw array, or concatenated DICOM files."""

    path: str
    encoding: str                         # "raw" | "dicom" | "stored"
    shape: tuple[int, ...]
    dtype: str
    file_sizes: tuple[int, ...] = ()
    offset: int = 0
    field: str = "header.input.inline"    # the request field, for error messages
    #: A stored image (encoding "stored"): its compressed voxel blob; ``path`` and
    #: ``file_sizes`` are then its DICOM files, if it has any, and ``digest`` their
    #: blob's (the key of the headers a worker keeps: worker/header_cache.py).
    voxels: str = ""
    digest: str = ""
    #: A small inline image of a synchronous call: its bytes (any buffer; a uint8 array
    #: travels out of band), sent to the worker with the task instead of a spool file
    #: (``path`` is then empty).
    data: object = None
    #: A raw image in a client's shared-memory object of this name, at ``offset``
    #: (worker/shm.py; ``path`` is then empty).
    shm: str = ""


@dataclass(frozen=True)
class TaskSpec:
    job_id: str
    inputs: tuple[InputSpec, ...]         # the image, then the operands
    ops: tuple                            # ResolvedOp values
    out_path: str
    compute_dtype: str = "float32"
    output_dtype: str = "float32"
    output_format: str = "raw"            # "raw" | "dicom_series" | "dicom_file"
    output_spacing: tuple[float, ...] | None = None
    description: str = ""
    device: str = "cpu"                   # "cpu" | "gpu"
    #: A slab of a split volume: read its rows plus halo, write its core into out_path,
    #: a raw file of shape out_shape shared by every slab.
    region: Region | None = None
    out_shape: tuple[int, ...] | None = None
    #: Return the result's bytes in TaskResult.data instead of writing out_path (small
    #: results of synchronous calls).
    result_in_memory: bool = False
    #: Write a RAW result into a client's shared-memory object: (its name, the offset).
    out_region: tuple[str, int] | None = None


@dataclass(frozen=True)
class StackSpec:
    """Images of one shape and dtype, one pipeline: one array with a new leading axis.

    Image ``k`` of :attr:`stack` is job ``job_ids[k]``; the operands are shared by every
    image. Each image is processed on its own (a loop over the leading axis, inside this
    one call), so its result equals the one it would have alone, bit for bit.
    """

    job_ids: tuple[str, ...]
    stack: InputSpec                      # raw, shape (images, *image shape)
    operands: tuple[InputSpec, ...]
    ops: tuple                            # ResolvedOp values
    compute_dtype: str = "float32"
    output_dtype: str = "float32"
    device: str = "cpu"                   # "cpu" | "gpu"
    #: Per image, where its bytes are (a client's shared-memory region): the worker reads
    #: each there, and :attr:`stack` only describes them (no bytes of its own).
    images: tuple[InputSpec, ...] = ()
    #: Per image, the (object name, offset) its result is written into, or None (the
    #: result comes back in StackResult.out).
    out_regions: tuple = ()

    @property
    def job_id(self) -> str:
        """The first image's job (a stack is announced and keyed by it)."""
        return self.job_ids[0]


@dataclass
class StackResult:
    """The results of a stack, per image: its result array (None where it failed), its
    CRC-32, compute seconds and error (None: it succeeded)."""

    out: list                             # np.ndarray or None, one per image
    crc32: list[int]
    seconds: list[float]
    errors: list
    started_at: float
    finished_at: float
    backend: str
    device: str
    worker: str
    versions: dict = field(default_factory=dict)
    gpu: bool = False                     # a GPU ran it: see kernel and transfer seconds
    energy_joules: float | None = None    # the whole stack's, where NVML reports it
    #: On a GPU, per image: the kernels alone, and the upload and download.
    kernel_seconds: list = field(default_factory=list)
    transfer_seconds: list = field(default_factory=list)
    #: On a GPU: compiling the pipeline's kernels before the first image (kernel_cache).
    compile_seconds: float | None = None
    #: Set by the dispatcher: why it ran on CPU though a GPU was asked for ("" otherwise).
    placement: str = ""
    #: On a GPU without energy_joules: why (gpu_meter.py).
    energy_absent: str = ""
    #: Per image its result's shape, and the results' dtype (also for a result written
    #: into a region, whose ``out`` entry is None).
    shapes: list = field(default_factory=list)
    dtype: str = ""
    #: On a GPU: its free memory once the stack's arrays were released (for placement).
    device_free: int | None = None


@dataclass
class TaskResult:
    out_path: str
    shape: tuple[int, ...]
    dtype: str
    file_sizes: tuple[int, ...]
    nbytes: int
    started_at: float
    finished_at: float
    compute_seconds: float
    backend: str
    device: str
    worker: str
    crc32: int = 0
    versions: dict = field(default_factory=dict)
    gpu_seconds: float | None = None      # absent unless measured on a GPU: kernels only
    energy_joules: float | None = None    # absent unless NVML reports it
    #: Upload and download between host and device (GPU only), apart from gpu_seconds.
    transfer_seconds: float | None = None
    #: Compiling this pipeline's kernels on first use in the worker (GPU only), never
    #: billed; None on a GPU where the compile could not be separated from the run.
    compile_seconds: float | None = None
    #: On a GPU without energy_joules: why (gpu_meter.py).
    energy_absent: str = ""
    #: On a GPU: its free memory once the job's arrays were released (for placement).
    device_free: int | None = None
    #: The result itself (TaskSpec.result_in_memory): a RAW result's array (sent back out
    #: of band), or a DICOM result's files, concatenated.
    data: object = None
