"""The README's path: `medcompute serve` as its own process, `medcompute process` on a CT file."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BIN = Path(sys.executable).parent
CT = get_testdata_file("CT_small.dcm")


def _cli(*args, check=True):
    return subprocess.run([str(BIN / "medcompute"), *args], capture_output=True, text=True,
                          timeout=180, check=check)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("served")
    log = data / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "medcompute"), "serve", "--address", "127.0.0.1:0", "--data-dir",
             str(data), "--workers", "1"], stdout=out, stderr=subprocess.STDOUT)
    try:
        address = None
        deadline = time.monotonic() + 120
        while address is None and time.monotonic() < deadline and proc.poll() is None:
            if m := re.search(r"medcompute serving on (\S+)", log.read_text()):
                address = m.group(1)
            else:
                time.sleep(0.2)
        if address is None:
            pytest.fail("the server did not start:\n" + log.read_text())
        yield address, data
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_process_a_ct_file_to_a_derived_dicom_with_json(served, tmp_path):
    address, _ = served
    out = tmp_path / "ct_edges.dcm"
    run = _cli("process", CT, "--op", "gaussian:sigma_mm=1.5", "--op", "edge:operator=sobel",
               "-o", str(out), "--json", "--server", address)
    header = json.loads(run.stdout)
    assert [a["name"] for a in header["applied"]] == ["gaussian", "edge"]
    assert header["usage"]["operations"] == ["gaussian", "edge"]
    assert header["usage"]["compute_seconds"] > 0
    assert header["usage"]["subscriber"] == "local"
    assert header["job_id"] == header["usage"]["job_id"]
    ds = pydicom.dcmread(out)
    assert "DERIVED" in ds.ImageType
    assert ds.pixel_array.shape == pydicom.dcmread(CT).pixel_array.shape
    assert "edge" in ds.DerivationDescription


def test_process_to_npy_and_ops_listing(served, tmp_path):
    address, _ = served
    out = tmp_path / "smooth.npy"
    run = _cli("process", CT, "--op", "gaussian:sigma=2", "-o", str(out), "--server", address)
    assert "applied gaussian" in run.stderr
    assert np.load(out).dtype == np.float32
    ops = _cli("ops", "--server", address).stdout
    for name in ("gaussian", "bandpass", "project", "mip"):
        assert name in ops


def test_mistakes_exit_non_zero_with_a_message(served, tmp_path):
    address, _ = served
    bad_op = _cli("process", CT, "--op", "gausian:sigma=2", "-o", str(tmp_path / "x.npy"),
                  "--server", address, check=False)
    assert bad_op.returncode == 2 and "unknown operation 'gausian'" in bad_op.stderr
    no_spacing = tmp_path / "a.npy"
    np.save(no_spacing, np.zeros((4, 4), np.float32))
    refused = _cli("process", str(no_spacing), "--op", "gaussian:sigma_mm=1", "-o",
                   str(tmp_path / "y.npy"), "--server", address, check=False)
    assert refused.returncode == 3
    assert "INVALID_ARGUMENT" in refused.stderr and "sigma_mm" in refused.stderr
    not_dicom = tmp_path / "note.dcm"
    not_dicom.write_text("not an image")
    refused = _cli("process", str(not_dicom), "--op", "gaussian:sigma=1", "-o",
                   str(tmp_path / "z.npy"), "--server", address, check=False)
    assert refused.returncode == 3 and "not a DICOM file" in refused.stderr


def test_serve_refuses_a_non_loopback_address(tmp_path):
    run = _cli("serve", "--address", "0.0.0.0:0", "--data-dir", str(tmp_path), check=False)
    assert run.returncode == 2 and "refusing to listen on 0.0.0.0" in run.stderr


def test_serve_refuses_a_bad_tariff_and_an_open_metrics_endpoint(tmp_path):
    bad = tmp_path / "tariff.toml"
    bad.write_text('name = "x"\ncurrency = "EUR"\n[prices]\njob = "cheap"\n')
    run = _cli("serve", "--data-dir", str(tmp_path), "--tariff", str(bad), check=False)
    assert run.returncode == 2
    assert run.stderr.startswith("medcompute serve: --tariff: ")
    assert "prices.job: expected a non-negative number" in run.stderr
    run = _cli("serve", "--data-dir", str(tmp_path), "--tariff", str(tmp_path / "none.toml"),
               check=False)
    assert run.returncode == 2 and "no such tariff file" in run.stderr
    run = _cli("serve", "--data-dir", str(tmp_path), "--metrics-port", "0",
               "--metrics-address", "0.0.0.0", check=False)
    assert run.returncode == 2 and "refusing to serve metrics on 0.0.0.0" in run.stderr


def test_help_texts():
    for cmd in ([], ["serve"], ["process"], ["ops"], ["submit"], ["watch"], ["fetch"],
                ["cancel"], ["jobs"], ["inbox"], ["deliveries"], ["usage"],
                ["usage", "invoice"]):
        done = _cli(*cmd, "--help")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(" ".join(["usage: medcompute", *cmd])), done.stdout
    assert os.path.exists(BIN / "medcompute")


def test_output_cut_short_by_the_reader_is_not_an_error(served):
    address, _ = served
    pipeline = subprocess.run(f"'{BIN / 'medcompute'}' ops --server {address} | head -1",
                              shell=True, capture_output=True, text=True, timeout=120)
    assert pipeline.stdout.startswith("gaussian")
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr
