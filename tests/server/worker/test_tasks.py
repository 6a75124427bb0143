"""What a worker runs for a job: failures reach the server as errors it can report."""

import numpy as np
import pytest

from medcompute.server.errors import Internal
from medcompute.server.worker import tasks


class Panic(BaseException):
    """As a Rust library's panic: a BaseException that is not an Exception."""


def test_a_panic_in_a_task_is_reported_not_lost(tmp_path, monkeypatch):
    # Dask delivers only Exceptions to the client; a BaseException would leave the call
    # waiting for a result that never comes.
    path = tmp_path / "in.raw"
    np.zeros((2, 3), np.float32).tofile(path)
    spec = tasks.InputSpec(str(path), "raw", (2, 3), "<f4")

    def panic(spec):
        raise Panic("index out of bounds")

    monkeypatch.setattr(tasks, "load_image", panic)
    with pytest.raises(Internal, match="Panic"):
        tasks.materialize(spec, str(tmp_path / "out.raw"))
    job = tasks.TaskSpec(job_id="j", inputs=(spec,), ops=(), out_path=str(tmp_path / "o"))
    [error] = tasks.run_batch([job])
    assert isinstance(error, Internal)



@pytest.mark.parametrize("axis", [0, 1])
def test_a_slab_of_a_stored_image_reads_its_rows_from_the_voxel_blob(tmp_path, axis):
    from medcompute.server.storage.blobs import VoxelWriter
    from medcompute.server.worker.slabs import Region

    volume = np.random.default_rng(3).integers(0, 4000, (12, 256, 300)).astype(np.uint16)
    blob = tmp_path / "voxels"
    with VoxelWriter(blob, volume.shape, volume.dtype) as w:
        w.add(volume.tobytes())
        w.finish()
    spec = tasks.InputSpec(str(tmp_path / "files"), "stored", volume.shape, volume.dtype.str,
                           voxels=str(blob))           # its DICOM files are never read
    region = Region(axis=axis, start=4, stop=8, lo=3, hi=9, out_axis=axis)
    got = tasks._load_region(spec, region, volume.ndim)
    assert np.array_equal(got, volume[3:9] if axis == 0 else volume[:, 3:9])
