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


_MEASURE = """
import resource, numpy as np
from medcompute import kernels
image = np.zeros((64, 64), np.float32)
kernels.median(image, 1)
with open("/proc/self/statm") as f:        # resident now, in pages
    before = int(f.read().split()[1]) * resource.getpagesize()
kernels.median(image, {size})
# The peak resident size, in KiB on Linux, above what was resident before.
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("size", [61, 81])
def test_the_median_estimate_covers_what_it_allocates(size):
    grown = int(subprocess.run([sys.executable, "-c", _MEASURE.format(size=size)],
                               capture_output=True, text=True, check=True).stdout)
    estimate = kernels.working_memory("median", (64, 64), (size, size))
    assert grown > 10 << 20                       # the table is there to be measured
    assert estimate >= 0.95 * grown


def test_a_butterworth_filter_counts_its_padding():
    dog = kernels.working_memory("bandpass", (64, 64), None, (8.0, 8.0))
    butterworth = kernels.working_memory("bandpass", (64, 64), None, (8.0, 8.0),
                                         method="butterworth")
    wrapped = kernels.working_memory("bandpass", (64, 64), None, (8.0, 8.0),
                                     method="butterworth", mode="wrap")
    assert dog < wrapped < butterworth
