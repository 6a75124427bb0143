"""A package a worker cannot use (worker/packages.py), refused naming its field with the
reason: a wheel pip cannot install, a package whose module fails to import, an operation
that returns an image of another shape."""

import zipfile

import numpy as np
import pytest

from medcompute.server.errors import FailedPrecondition
from medcompute.server.worker import packages
from tests.software_helpers import build_wheel

pytestmark = pytest.mark.timeout(120)


def test_a_wheel_pip_cannot_install_is_refused_with_pips_reason(tmp_path):
    wheel = tmp_path / "sharpen-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:                # no *.dist-info at all
        z.writestr("sharpen_ops.py", "def op(image):\n    return image\n")
    with pytest.raises(FailedPrecondition) as caught:
        packages.install(wheel, tmp_path / "installed")
    assert caught.value.field == "wheel"
    assert caught.value.message.startswith("the wheel could not be installed: ")
    assert ".dist-info" in caught.value.message          # pip's own words, its last lines
    assert not (tmp_path / "installed").exists()


def test_a_package_whose_module_fails_to_import_cannot_be_loaded(tmp_path):
    wheel = build_wheel(tmp_path, name="needs-gpu", operations={"op": "op"},
                        source="raise ModuleNotFoundError('no module named cupy_extra')\n")
    folder = packages.install(wheel, tmp_path / "installed")
    with pytest.raises(FailedPrecondition) as caught:
        packages.describe(folder, memory_bytes=1 << 30, seconds=60)
    assert caught.value.field == "wheel"
    assert caught.value.message == ("the package could not be loaded: ModuleNotFoundError: "
                                    "no module named cupy_extra")


def test_an_operation_returning_another_shape_fails_its_job(tmp_path):
    source = "import numpy as np\n\ndef pad(image):\n    return np.pad(image, 1)\n"
    wheel = build_wheel(tmp_path, name="padder", source=source, operations={"pad": "pad"})
    run = packages.PackageRun("padder", "1.0", "2" * 64, "pad", {}, str(wheel), 1 << 30, 60)
    with pytest.raises(FailedPrecondition) as caught:
        packages.apply(run, np.zeros((3, 5, 6), np.float32), "pipeline[1].package")
    assert caught.value.field == "pipeline[1].package"
    assert caught.value.message == (
        "pad of padder 1.0 returned an image of shape (5, 7, 8); "
        "expected the shape it was given, (3, 5, 6)")
