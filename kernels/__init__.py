"""Image-processing kernels of medcompute, written once for NumPy/SciPy and CuPy.

Every kernel takes the image first and its main parameter second, everything
else keyword-only; it runs on the backend that owns the image
(:func:`backend_for`) and returns an array on that backend. Bad parameters
raise ``ValueError`` with a message that starts with the parameter's name.
No I/O, no service or cluster code lives here, and importing this package
does not import CuPy.
"""

from ._opencv import cpu_threads, set_cpu_threads
from .arithmetic import add, subtract
from .backend import (
    Backend,
    BackendUnavailable,
    backend_for,
    cpu_backend,
    gpu_backend,
    register_backend,
)
from .bandpass import bandpass, butterworth_mask, gaussian_sigma_for_cutoff
from .cast import saturating_cast
from .filters import (
    derivative_kernel,
    edge,
    edge_kernels,
    gaussian,
    gradient,
    laplacian,
    mean,
    median,
)
from .footprint import footprint_radius, gaussian_radius, window_radius
from .memory import working_memory
from .projection import project, projected_spacing, slab_count

__all__ = [
    "Backend",
    "BackendUnavailable",
    "add",
    "backend_for",
    "bandpass",
    "butterworth_mask",
    "cpu_backend",
    "cpu_threads",
    "derivative_kernel",
    "edge",
    "edge_kernels",
    "footprint_radius",
    "gaussian",
    "gaussian_radius",
    "gaussian_sigma_for_cutoff",
    "gpu_backend",
    "gradient",
    "laplacian",
    "mean",
    "median",
    "project",
    "projected_spacing",
    "register_backend",
    "saturating_cast",
    "set_cpu_threads",
    "slab_count",
    "subtract",
    "window_radius",
    "working_memory",
]
