"""Each kernel's working-memory estimate (kernels/memory.py) against what it allocates."""

import subprocess
import sys

import numpy as np
import pytest

from medcompute import kernels
from medcompute.kernels.memory import MEMORY


def test_every_kernel_has_an_estimate():
    names = {"gaussian", "mean", "median", "laplacian", "gradient", "edge", "bandpass",
             "project", "subtract", "add"}
    assert set(MEMORY) == names
    assert all(callable(getattr(kernels, n)) for n in names)


def test_an_unknown_kernel_is_named():
    with pytest.raises(ValueError, match="name: no kernel 'blur'"):
        kernels.working_memory("blur", (4, 4))


def test_the_median_window_times_the_image_is_counted():
    # The reproductions of issue 20: far more than any worker has.
    assert kernels.working_memory("median", (128, 128), (301, 301)) > 11 << 30
    assert kernels.working_memory("median", (64, 64), (1024, 1024)) > 32 << 30
    small = kernels.working_memory("median", (512, 512), (3, 3))
    assert small < 3 * 512 * 512 * 4
    assert kernels.working_memory("median", (64, 64), (3, 3), dtype=np.float64) > \
        kernels.working_memory("median", (64, 64), (3, 3))


_WITHIN = """
import resource, numpy as np
from medcompute import kernels
image = np.zeros((64, 64), np.float32)
kernels.median(image, 3)
with open("/proc/self/statm") as f:        # the address space now, in pages
    now = int(f.read().split()[0]) * resource.getpagesize()
limit = now + int({share} * kernels.working_memory("median", (64, 64), ({size}, {size})))
resource.setrlimit(resource.RLIMIT_AS, (limit + (16 << 20), resource.RLIM_INFINITY))
try:
    kernels.median(image, {size})
    print("fits")
except MemoryError:
    print("exhausted")
"""


def _median_within(size: int, share: float) -> str:
    return subprocess.run([sys.executable, "-c", _WITHIN.format(size=size, share=share)],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("size", [61, 81])
def test_the_median_estimate_covers_what_it_allocates_and_no_more_than_twice(size):
    # The median runs in the address space its estimate allows, and not in half of it.
    assert _median_within(size, 1.0) == "fits"
    assert _median_within(size, 0.5) == "exhausted"


def test_a_butterworth_filter_counts_its_padding():
    dog = kernels.working_memory("bandpass", (64, 64), None, (8.0, 8.0))
    butterworth = kernels.working_memory("bandpass", (64, 64), None, (8.0, 8.0),
                                         method="butterworth")
    wrapped = kernels.working_memory("bandpass", (64, 64), None, (8.0, 8.0),
                                     method="butterworth", mode="wrap")
    assert dog < wrapped < butterworth
