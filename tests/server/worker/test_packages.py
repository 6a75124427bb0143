"""A package's operation runs in a sandbox process: its result is the function's, and
its failures (raise, exit, memory, time) are each reported as the job's reason."""

import numpy as np
import pytest

from medcompute.server.errors import FailedPrecondition
from medcompute.server.worker import packages
from tests.software_helpers import build_wheel, load_module

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def folder(wheel, tmp_path_factory):
    return packages.install(wheel, tmp_path_factory.mktemp("installed") / "sharpen")


def run(wheel, operation, params=None, *, memory=1 << 30, seconds=60.0):
    return packages.PackageRun("sharpen", "1.0", "0" * 64, operation, params or {}, str(wheel),
                               memory, seconds)


def test_describe_reads_each_operation_with_its_parameters_and_docstring(folder):
    ops = {o["name"]: o for o in packages.describe(folder, memory_bytes=1 << 30, seconds=60)}
    assert sorted(ops) == ["exits", "forever", "hog", "raises", "unsharp_mask"]
    unsharp = ops["unsharp_mask"]
    assert unsharp["summary"].startswith("Unsharp mask")
    assert "classic sharpening" in unsharp["doc"]
    assert unsharp["parameters"] == [
        {"name": "amount", "unit": "", "default": 1.0,
         "description": "weight of the detail added back"},
        {"name": "sigma", "unit": "voxel", "default": 1.0, "description": "blur of the mask"}]


def test_install_twice_keeps_the_first(wheel, folder):
    assert packages.install(wheel, folder) == str(folder)


def test_the_result_equals_the_function_called_in_process(wheel, tmp_path):
    image = np.random.default_rng(3).normal(100, 20, (32, 40)).astype(np.float32)
    got = packages.apply(run(wheel, "unsharp_mask", {"amount": 1.5, "sigma": 2.0}), image,
                         "pipeline[0].package")
    want = load_module(tmp_path).unsharp_mask(image, amount=1.5, sigma=2.0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize(("operation", "reason"), [
    ("raises", "failed: ValueError: the sample refuses every image"),
    ("exits", "failed: its process exited with status 7"),
    ("hog", "needed more than its memory limit of 512 MiB"),
    ("nothing", "has no operation 'nothing'"),
])
def test_each_failure_is_reported_with_its_reason(wheel, operation, reason):
    image = np.zeros((8, 8), np.float32)
    with pytest.raises(FailedPrecondition) as caught:
        packages.apply(run(wheel, operation, memory=512 << 20), image, "pipeline[0].package")
    assert caught.value.field == "pipeline[0].package"
    assert reason in caught.value.message


def test_an_operation_that_never_returns_is_stopped_at_its_time_limit(wheel):
    with pytest.raises(FailedPrecondition, match="ran past its limit of 3 s"):
        packages.apply(run(wheel, "forever", seconds=3), np.zeros((4, 4), np.float32),
                       "pipeline[0].package")


def test_a_result_of_another_shape_is_refused(tmp_path):
    source = "def crop(image):\n    return image[1:]\n"
    wheel = build_wheel(tmp_path, name="cropper", source=source, operations={"crop": "crop"})
    with pytest.raises(FailedPrecondition, match=r"shape \(3, 4\); expected .*\(4, 4\)"):
        packages.apply(packages.PackageRun("cropper", "1.0", "1" * 64, "crop", {}, str(wheel),
                                           1 << 30, 60), np.zeros((4, 4), np.float32), "f")
