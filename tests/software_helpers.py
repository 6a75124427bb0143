"""A sample processing package, built by the tests as a wheel (the wheel format written
out with zipfile: METADATA, WHEEL, entry_points.txt and a RECORD with each file's hash)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import zipfile
from pathlib import Path

__all__ = ["SHARPEN", "build_wheel", "load_module"]

#: The sample package's module: an unsharp mask, and operations that fail in each way a
#: package can (raise, exit its process, allocate past its limit, never return).
SHARPEN = '''
"""Sharpening for medcompute."""
import os

import numpy as np
from scipy import ndimage


def unsharp_mask(image, amount=1.0, sigma=1.0):
    """Unsharp mask: image + amount * (image - gaussian(image, sigma)).

    A classic sharpening filter.
    """
    blurred = ndimage.gaussian_filter(image, sigma)
    return image + amount * (image - blurred)


unsharp_mask.params = {
    "amount": {"default": 1.0, "description": "weight of the detail added back"},
    "sigma": {"default": 1.0, "unit": "voxel", "description": "blur of the mask"},
}


def raises(image):
    """Always fails."""
    raise ValueError("the sample refuses every image")


def exits(image):
    """Ends its process."""
    os._exit(7)


def hog(image):
    """Allocates far past any limit."""
    return np.ones(1 << 36, dtype=np.uint8)


def forever(image):
    """Never returns."""
    while True:
        pass
'''

OPERATIONS = {"unsharp_mask": "unsharp_mask", "raises": "raises", "exits": "exits",
              "hog": "hog", "forever": "forever"}


def _hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_wheel(folder: Path, name: str = "sharpen", version: str = "1.0",
                source: str = SHARPEN, operations: dict | None = None,
                module: str = "") -> Path:
    """A pure-Python wheel of one module declaring ``operations`` (entry point name ->
    function) in the group ``medcompute.operations``; its path in ``folder``."""
    module = module or f"{name.replace('-', '_')}_ops_{version.replace('.', '_')}"
    operations = OPERATIONS if operations is None else operations
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    files = {
        f"{module}.py": source.encode(),
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                             "License: MIT\nSummary: sample operations\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: medcompute-tests\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": ("[medcompute.operations]\n" + "".join(
            f"{op} = {module}:{fn}\n" for op, fn in operations.items())).encode(),
    }
    record = "".join(f"{path},{_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files.items():
            z.writestr(arcname, data)
    return path


def load_module(folder: Path, source: str = SHARPEN, name: str = "sharpen_in_process"):
    """The package's module imported in this process (the reference for its results)."""
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
