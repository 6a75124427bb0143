"""Acknowledged means durable: `medcompute serve` killed with SIGKILL in the middle of a
stream of uploads restarts with every acknowledged image present and readable; a backup
taken while a server runs is served, image for image, by a server started on it."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medcompute.client import ServiceError, StoreClient
from tests.served import BIN, Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CT = get_testdata_file("CT_small.dcm")


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "medcompute"), *args], capture_output=True, text=True,
                          timeout=120)


def _array(k: int) -> np.ndarray:
    return np.random.default_rng(k).integers(-1000, 3000, (8, 256, 256)).astype(np.int16)


def test_sigkill_during_uploads_then_restart_backup_and_serve_the_copy(tmp_path):
    data, copy = tmp_path / "data", tmp_path / "copy"
    first = Served(data, tmp_path / "first.log")
    acked: dict[str, int] = {}
    enough, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    try:
        with StoreClient(first.address, timeout=60) as store:
            ct = store.register(CT)

        def upload():
            with StoreClient(first.address, timeout=60) as store:
                k = 0
                while not stop.is_set():
                    try:
                        image = store.register(_array(k))
                    except ServiceError as exc:   # the server was killed under this call
                        failures.append(exc)
                        return
                    acked[image.image_id] = k
                    k += 1
                    if len(acked) >= 6:
                        enough.set()

        uploader = threading.Thread(target=upload)
        uploader.start()
        assert enough.wait(120), "the uploads did not get going"
    finally:
        first.kill()          # in the middle of the next upload
        stop.set()
    uploader.join(60)
    assert not uploader.is_alive() and len(acked) >= 6

    again = Served(data, tmp_path / "again.log")
    try:
        with StoreClient(again.address, timeout=60) as store:
            for image_id, k in acked.items():
                np.testing.assert_array_equal(store.get(image_id).array, _array(k))
            assert store.get(ct, dicom=True).files == [Path(CT).read_bytes()]
            listed = {i.image_id for i in store.find()}
            assert set(acked) | {ct.image_id} <= listed
            # At most the upload that was cut short may have reached the catalog.
            assert len(listed) <= len(acked) + 2
            # What the killed server was writing was swept away at start-up.
            assert store.verify()["unreferenced_blobs"] == 0
            assert list((data / "blobs" / "tmp").iterdir()) == []
        verify = _cli("store", "verify", "--server", again.address)
        assert verify.returncode == 0 and "0 problem(s)" in verify.stdout, verify.stdout
        backup = _cli("store", "backup", str(copy), "--server", again.address)
        assert backup.returncode == 0, backup.stderr
        assert f"to {copy}" in backup.stdout
    finally:
        again.stop()

    served = Served(copy, tmp_path / "copy.log")
    try:
        with StoreClient(served.address, timeout=60) as store:
            assert {i.image_id for i in store.find()} == listed
            for image_id, k in acked.items():
                np.testing.assert_array_equal(store.get(image_id).array, _array(k))
            assert store.get(ct, dicom=True).files == [Path(CT).read_bytes()]
            assert store.verify()["problems"] == []
    finally:
        served.stop()
