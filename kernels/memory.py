"""Peak working memory of each kernel, from the image's shape and dtype and the kernel's
parameters, without touching an array: what a caller checks against a worker's memory
before a task starts. Each estimate lives next to its kernel; this module names them.

``working_memory(name, shape, *args, dtype=..., **kwargs)`` takes what the kernel takes,
with the image's shape in place of the image (an operand is left out).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arithmetic import arithmetic_memory
from .bandpass import bandpass_memory
from .filters import median_memory, separable_memory
from .projection import project_memory

__all__ = ["MEMORY", "working_memory"]

#: Each kernel's estimate, by the kernel's name.
MEMORY = {
    "gaussian": separable_memory,
    "mean": separable_memory,
    "laplacian": separable_memory,
    "gradient": separable_memory,
    "edge": separable_memory,
    "median": median_memory,
    "bandpass": bandpass_memory,
    "project": project_memory,
    "subtract": arithmetic_memory,
    "add": arithmetic_memory,
}


def working_memory(name: str, shape: Any, *args: Any, dtype: Any = np.float32,
                   **kwargs: Any) -> int:
    """Peak bytes the kernel ``name`` allocates for an image of ``shape``.

    Parameters
    ----------
    name : str
        A kernel of this package (a key of :data:`MEMORY`).
    shape : sequence of int
        The image's shape.
    *args, **kwargs
        The kernel's parameters, as the kernel takes them (lengths in voxels).
    dtype : {numpy.float32, numpy.float64}, optional
        Compute dtype.

    Returns
    -------
    int
        Bytes.

    Examples
    --------
    >>> working_memory("median", (64, 64), (1024, 1024)) // 2**30
    32
    """
    try:
        estimate = MEMORY[name]
    except KeyError:
        raise ValueError(f"name: no kernel {name!r}; expected one of "
                         f"{', '.join(MEMORY)}") from None
    return int(estimate(tuple(shape), *args, dtype=dtype, **kwargs))
