"""An oracle for DICOM pixel values that shares no code with the service: pydicom (with
pylibjpeg/gdcm where a file is compressed) decodes each file, pydicom's own Modality LUT
gives the values, and the slices are ordered along the normal of their orientation, as
PS3.3 C.7.6.2 defines a slice's place."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut


def _dataset(item) -> Dataset:
    return item if isinstance(item, Dataset) else pydicom.dcmread(os.fspath(item))


def modality_values(item) -> np.ndarray:
    """The values of one file (all its frames) after its Modality LUT (rescale)."""
    ds = _dataset(item)
    return np.asarray(apply_modality_lut(ds.pixel_array, ds))


def series_volume(items: Iterable) -> np.ndarray:
    """The slices of single-frame files stacked along their slice normal (or by
    InstanceNumber where they have no geometry), after each file's Modality LUT."""
    datasets = [_dataset(i) for i in items]

    def place(ds: Dataset) -> float:
        if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
            o = np.asarray(ds.ImageOrientationPatient, float)
            return float(np.dot(np.cross(o[:3], o[3:]), np.asarray(ds.ImagePositionPatient, float)))
        return float(ds.get("InstanceNumber", 0) or 0)

    datasets.sort(key=place)
    return np.stack([modality_values(ds) for ds in datasets])
