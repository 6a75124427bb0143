"""The headers a worker keeps between tasks (worker/header_cache.py): registering a series
keeps them, and the derived series a job writes from the kept headers is, file for file,
the one it writes from the files parsed again."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pydicom
from pydicom.tag import Tag

from medcompute.server.dicom.volume import load, quiet_pydicom
from medcompute.server.dicom.write import Series, derived_uid
from medcompute.server.worker import header_cache, store_tasks, tasks
from medcompute.server.worker.specs import InputSpec, TaskSpec
from tests import store_helpers as H


def _without_instance_uids(files: list[bytes]) -> list[bytes]:
    """The files with their SOP Instance UIDs blanked (each writing makes new ones)."""
    out = []
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
        buffer = io.BytesIO()
        ds.save_as(buffer)
        out.append(buffer.getvalue())
    return out


def _registered(tmp_path, parts, digest):
    blob = tmp_path / f"{digest}.dcm"
    blob.write_bytes(b"".join(parts))
    sizes = tuple(len(p) for p in parts)
    written = store_tasks.ingest_dicom(str(blob), sizes, str(tmp_path / f"{digest}.vox"),
                                       max_voxels=2**31, digest=digest)
    return InputSpec(str(blob), "stored", written.shape, written.dtype, file_sizes=sizes,
                     digest=digest)


def test_a_derived_series_written_from_kept_headers_is_the_one_written_from_the_files(
        tmp_path):
    source = _registered(tmp_path, H.ct_series(24), "series-a")
    kept = header_cache.recall(("series-a", source.file_sizes))
    assert kept is not None and len(kept.datasets) == 24
    assert all("PixelData" not in ds for ds in kept.datasets)       # headers only
    out = np.random.default_rng(1).normal(0, 50, source.shape).astype(np.float32)
    spec = TaskSpec("job", (source,), (), str(tmp_path / "out"),
                    output_format="dicom_series", description="gaussian sigma=1")
    series = Series(derived_uid(), 1.7e9, (4, 20))
    from_kept = tasks._derived_files(spec, out, series)
    parsed = tasks._derived_files(replace(spec, inputs=(replace(source, digest=""),)), out,
                                  series)
    assert len(from_kept) == 16
    assert _without_instance_uids(from_kept) == _without_instance_uids(parsed)


def test_headers_with_an_element_to_read_after_the_pixel_data_are_not_kept(tmp_path):
    # A large private element after Pixel Data is read from the file only when asked
    # for: the file's bytes up to the pixel data would not hold it.
    parts = []
    for data in H.ct_series(2):
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.add_new(Tag(0x7FE1, 0x0010), "LO", "ACME")
        ds.add_new(Tag(0x7FE1, 0x1010), "OB", b"\x01" * 40_000)
        buffer = io.BytesIO()
        ds.save_as(buffer)
        parts.append(buffer.getvalue())
    source = _registered(tmp_path, parts, "trailing")
    assert source.shape[0] == 2
    assert header_cache.recall(("trailing", source.file_sizes)) is None


def test_the_oldest_volume_leaves_when_the_files_kept_are_over_the_budget(monkeypatch):
    monkeypatch.setattr(header_cache, "KEPT_FILES", 12)

    def volume(n):
        with quiet_pydicom():
            return load(H.ct_series(n), max_voxels=2**31, field="input.dicom")
    header_cache.keep(("a", (1,)), volume(5))
    header_cache.keep(("b", (1,)), volume(5))
    assert header_cache.recall(("a", (1,))) is not None      # now the latest used
    header_cache.keep(("c", (1,)), volume(5))                  # 15 files: b leaves
    assert header_cache.recall(("b", (1,))) is None
    assert header_cache.recall(("a", (1,))) is not None
    assert header_cache.recall(("c", (1,))) is not None
    header_cache.keep(("d", (1,)), volume(13))                 # over the budget alone
    assert header_cache.recall(("d", (1,))) is None
