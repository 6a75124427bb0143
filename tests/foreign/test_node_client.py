"""The Node.js example client (tests/foreign/process.js) against a real server."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "foreign" / "process.js"
MODULES = ROOT / ".tools" / "node_modules"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (MODULES / "@grpc" / "grpc-js").is_dir():
        pytest.skip("node and the npm packages are installed by `make tools` (make test runs it)")
    return node


def _run(server, tmp_path, image, expected):
    inp, exp = tmp_path / "input.f32", tmp_path / "expected.f32"
    inp.write_bytes(image.astype("<f4").tobytes())
    exp.write_bytes(expected.astype("<f4").tobytes())
    env = dict(os.environ, NODE_PATH=str(MODULES))
    return subprocess.run([_node(), str(SCRIPT), server.address, str(inp), *map(str, image.shape),
                           str(exp)], capture_output=True, text=True, env=env, timeout=90)


def test_node_client_processes_an_image_and_gets_scipys_result(server, tmp_path):
    image = np.random.default_rng(7).random((24, 32), dtype=np.float32) * 100
    expected = ndi.gaussian_filter(image, 1.0, mode="nearest", truncate=4.0)
    run = _run(server, tmp_path, image, expected)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["match"] and out["max_abs_error"] <= 1e-4
    assert out["shape"] == [24, 32] and out["dtype"] == "DATA_TYPE_FLOAT32"
    assert out["bytes"] == image.nbytes and out["job_id"]


def test_node_client_reports_a_mismatch(server, tmp_path):
    image = np.ones((4, 4), np.float32)
    run = _run(server, tmp_path, image, image + 1)
    assert run.returncode == 1, run.stdout + run.stderr
    assert json.loads(run.stdout)["max_abs_error"] == pytest.approx(1.0)


def test_node_client_reports_a_refused_call(server, tmp_path):
    image = np.ones((4, 4), np.float32)
    bad = tmp_path / "bad.f32"
    bad.write_bytes(image.tobytes()[:-4])    # 60 bytes for a 4 x 4 float32 image (64)
    run = subprocess.run([_node(), str(SCRIPT), server.address, str(bad), "4", "4", str(bad)],
                         capture_output=True, text=True, timeout=90,
                         env=dict(os.environ, NODE_PATH=str(MODULES)))
    assert run.returncode == 2, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["error"] == "INVALID_ARGUMENT" and out["details"].startswith("header.input")
