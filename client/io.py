"""Local inputs and outputs of the command line and the client: arrays, DICOM files, folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LocalImage", "read_input", "dicom_files_in", "write_dicom", "output_kind",
           "check_output", "make_folder"]


@dataclass
class LocalImage:
    """An image ready to send: a raw array, or the bytes of DICOM files."""

    array: np.ndarray | None = None
    dicom: list[bytes] | None = None
    spacing: tuple[float, ...] | None = None

    @property
    def nbytes(self) -> int:
        return self.array.nbytes if self.array is not None else sum(len(b) for b in self.dicom)


def dicom_files_in(folder: Path) -> list[Path]:
    """The files of a folder that can be DICOM (not hidden, not obviously something else)."""
    skip = {".txt", ".json", ".md", ".xml", ".csv", ".png", ".jpg", ".npy"}
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in skip)
    if not files:
        raise ValueError(f"{folder}: no files in this folder")
    return files


def read_input(inputs, spacing=None) -> LocalImage:
    """An image from a NumPy array, a ``.npy`` file, a DICOM file, several DICOM files
    (one series) or a folder of DICOM files."""
    if isinstance(inputs, np.ndarray):
        # The wire carries C-order little-endian bytes: views and big-endian arrays are copied.
        array = np.ascontiguousarray(inputs)
        return LocalImage(array=array.astype(array.dtype.newbyteorder("<"), copy=False),
                          spacing=spacing)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("no input given")
    for p in paths:
        if not p.exists():
            raise ValueError(f"{p}: no such file or folder")
    if len(paths) == 1 and paths[0].suffix.lower() == ".npy":
        return LocalImage(array=np.load(paths[0], allow_pickle=False), spacing=spacing)
    files: list[Path] = []
    for p in paths:
        if p.suffix.lower() == ".npy":
            raise ValueError(f"{p}: a .npy input must be given alone")
        files.extend(dicom_files_in(p) if p.is_dir() else [p])
    return LocalImage(dicom=[f.read_bytes() for f in files], spacing=spacing)


def output_kind(path: Path) -> str:
    """``npy``, ``dicom_file`` or ``dicom_series`` from an output path."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix in (".dcm", ".dicom"):
        return "dicom_file"
    if suffix == "" or path.is_dir():
        return "dicom_series"
    raise ValueError(f"{path}: expected an output ending in .npy or .dcm, or a folder")


def _missing_above(folder: Path) -> str | None:
    folder = Path(folder).absolute()
    if folder.exists() or folder.parent.is_dir():
        return None
    return (f"the folder {folder.parent} does not exist (only the output's own folder is "
            "created: create the folders above it first)")


def check_output(path: Path) -> None:
    """ValueError unless writing ``path`` creates at most one folder: the output's own
    (``-o new/`` or ``-o new/x.npy`` in an existing folder). A mistyped path such as
    ``/nonexistent/dir/x.npy`` is refused before anything is sent or created."""
    path = Path(path)
    folder = path if path.is_dir() or path.suffix == "" else path.parent
    why = _missing_above(folder)
    if why:
        raise ValueError(f"{path}: {why}")


def make_folder(folder: Path) -> None:
    """Create ``folder`` (an output's folder) when missing, and nothing above it."""
    why = _missing_above(folder)
    if why:
        raise ValueError(f"{folder}: {why}")
    Path(folder).mkdir(exist_ok=True)


def write_dicom(files: list[bytes], path: Path) -> list[Path]:
    """Write DICOM result files: one file to ``path``, or a series into the folder ``path``."""
    if output_kind(path) == "dicom_file":
        if len(files) != 1:
            raise ValueError(f"{path}: the result has {len(files)} files; give a folder")
        make_folder(path.parent)
        path.write_bytes(files[0])
        return [path]
    make_folder(path)
    written = []
    for i, blob in enumerate(files, 1):
        target = path / f"IM{i:05d}.dcm"
        target.write_bytes(blob)
        written.append(target)
    return written
