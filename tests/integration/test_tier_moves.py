"""A tier move (to cold, and a recall to hot) interrupted by SIGKILL at each of its steps
loses nothing: `medcompute serve` (a real process, with a real Dask worker) kills itself
right after the named step (tests/tier_kill.py sets the mover's step seam), and
the next server on the same data and cold directories serves every image, byte for byte,
settles the blob the move left behind and verifies clean; a server without the kill point
completes every move."""

from __future__ import annotations

import copy
import hashlib
import os
import signal
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medcompute.client import ServiceError, StoreClient
from medcompute.server.store.tiers import STEPS
from tests import store_helpers as H
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _ct(k: int) -> bytes:
    ds = pydicom.dcmread(H.CT)
    ds = copy.deepcopy(ds)
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = (ds.pixel_array + np.int16(7 * k)).astype(np.int16).tobytes()
    return H.encode(ds)


def _reap(served: Served) -> None:
    """The server killed itself: wait for it, then kill what is left of its group."""
    try:
        served.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(served.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    served.proc.wait()
    served._close()


# What each step leaves of the interrupted blob before the next server starts (a move to
# "cold", and a recall to "hot"), and where the next server keeps it.
LEFT = {
    "cold": {"copied": ({"hot", "tmp:cold"}, "hot"), "synced": ({"hot", "cold"}, "hot"),
             "verified": ({"hot", "cold"}, "hot"), "switched": ({"hot", "cold"}, "cold"),
             "deleted": ({"cold"}, "cold")},
    "hot": {"copied": ({"cold", "tmp:hot"}, "cold"), "synced": ({"hot", "cold"}, "cold"),
            "verified": ({"hot", "cold"}, "cold"), "switched": ({"hot", "cold"}, "hot"),
            "deleted": ({"hot"}, "hot")},
}


@pytest.mark.parametrize("target", ["cold", "hot"])
def test_sigkill_at_each_step_of_a_move_loses_nothing(tmp_path, target):
    data, cold = tmp_path / "data", tmp_path / "cold"
    kept: dict[str, bytes] = {}            # image id -> its DICOM file
    interrupted: tuple[str, str, str] | None = None   # (image id, step, dicom digest)
    for k, step in enumerate((*STEPS, None)):
        killer = () if step is None else (sys.executable, "-m", "tests.tier_kill",
                                           f"{target}:{step}")
        served = Served(data, tmp_path / f"serve-{k}.log", "--cold-dir", str(cold),
                        program=killer)
        with StoreClient(served.address, timeout=60) as store:
            # what the previous server's interrupted move left is settled
            for image_id, original in kept.items():
                assert store.get(image_id, dicom=True).files == [original]
            report = store.verify()
            assert report.get("problems", []) == [] and \
                int(report.get("unreferenced_blobs", 0)) == 0, report
            assert list((cold / "blobs" / "tmp").iterdir()) == []
            assert list((data / "blobs" / "tmp").iterdir()) == []
            hot = {p.name for p in (data / "blobs").glob("??/*")}
            assert not hot & {p.name for p in (cold / "blobs").glob("??/*")}
            if interrupted is not None:
                image_id, was, digest = interrupted
                where = LEFT[target][was][1]
                assert (digest in hot) == (where == "hot"), (was, where)
            if step is None:   # a server without the kill point: every move completes now
                for image_id, original in kept.items():
                    assert store.move(image_id, target)["tier"] == target
                    assert store.get(image_id, dicom=True).files == [original]
                assert store.verify().get("problems", []) == []
                assert not {p.name for p in (data / "blobs").glob("??/*")} & \
                    {p.name for p in (cold / "blobs").glob("??/*")}
                break
            original = _ct(k)
            path = tmp_path / f"ct{k}.dcm"
            path.write_bytes(original)
            image = store.register(str(path))
            store.get(image, version="lossless")
            kept[image.image_id] = original
            if target == "hot":
                assert store.move(image, "cold")["tier"] == "cold"   # not a recall: not killed
            with pytest.raises(ServiceError):
                store.move(image, target)                     # the server dies in it
        _reap(served)
        assert served.proc.returncode == -signal.SIGKILL        # it killed itself
        digest = hashlib.sha256(original).hexdigest()
        left = {name for name, present in [
            ("hot", (data / "blobs" / digest[:2] / digest).exists()),
            ("cold", (cold / "blobs" / digest[:2] / digest).exists()),
            ("tmp:hot", any((data / "blobs" / "tmp").iterdir())),
            ("tmp:cold", any((cold / "blobs" / "tmp").iterdir()))] if present}
        assert left == LEFT[target][step][0], step
        interrupted = (image.image_id, step, digest)
    served.stop()
    assert len(kept) == len(STEPS)
