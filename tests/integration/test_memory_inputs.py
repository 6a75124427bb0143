"""Small inline images of a synchronous call travel to the worker in memory, not through
spool files; larger ones, stored results and asynchronous jobs keep their files."""

import shutil

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.client import Client, ServiceError
from medcompute.server.config import ServerConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def no_spool(server_thread, tmp_path_factory):
    """A server whose spool cannot be written: its folder is replaced by a file."""
    data = tmp_path_factory.mktemp("nospool")
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1,
                          batch_bytes=256 << 10)
    with server_thread(config) as running:
        shutil.rmtree(data / "spool")
        (data / "spool").write_text("not a folder")
        with Client(running.address, timeout=120) as c:
            yield c


def test_a_small_image_needs_no_spool_file(no_spool):
    img = np.random.default_rng(1).integers(0, 1000, (64, 60)).astype(np.uint16)
    r = no_spool.process(img, ["gaussian:sigma=1.5"])
    expected = ndi.gaussian_filter(img.astype(np.float32), 1.5, mode="nearest")
    np.testing.assert_allclose(r.array, expected, rtol=1e-5, atol=1e-3)
    assert int(r.usage["bytes_in"]) == img.nbytes and int(r.usage["bytes_out"]) == img.size * 4


def test_a_small_dicom_file_needs_no_spool_file_and_its_dicom_result_comes_back(no_spool):
    from pydicom.data import get_testdata_file

    r = no_spool.process(get_testdata_file("CT_small.dcm"), ["mean:size=3"],
                         output="dicom_file")
    assert len(r.files) == 1 and r.files[0][128:132] == b"DICM"


def test_an_image_over_the_batching_size_is_spooled(no_spool):
    big = np.zeros((300, 300), np.uint16)        # 360 KB float32 > batch_bytes (256 KiB)
    with pytest.raises(ServiceError) as caught:
        no_spool.process(big, ["mean:size=3"])
    # Its spool file cannot be made (a file stands where the folder should be): the
    # server's own fault, with a reference to its log, where the small images above passed.
    assert caught.value.code.name == "INTERNAL", caught.value
    assert "reference" in caught.value.details


def test_a_batch_of_small_images_needs_no_spool_file(no_spool):
    images = [np.full((32, 32), k, np.uint8) for k in range(6)]
    items = list(no_spool.process_many(images, ["mean:size=3"]))
    assert all(item.ok for item in items), [item.error for item in items]
    for item in items:
        np.testing.assert_allclose(item.result.array, images[item.index].astype(np.float32))


def test_a_submit_keeps_its_inputs_on_disk(no_spool):
    # Durable: a submitted job's inputs are written to its job folder, not the spool.
    from medcompute.proto.v1 import jobs_pb2

    job = no_spool.submit(np.ones((16, 16), np.uint8), ["mean:size=3"])
    assert no_spool.wait(job.job_id, timeout=120).state == jobs_pb2.JOB_STATE_SUCCEEDED
