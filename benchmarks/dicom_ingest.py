"""DICOM ingest: dcmtk's storescu sending a CT series into `medcompute serve --dicom-port`
against storescu into dcmtk's storescp on the same machine, in the same run, and the time
from the last slice acknowledged to the derived series (a routed Gaussian, pushed back by
C-STORE) having arrived at a dcmtk storescp.

    python benchmarks/dicom_ingest.py                    # 300 slices of 512x512 int16
    python benchmarks/dicom_ingest.py --slices 20 --size 128

Needs dcmtk (`make peers`). Writes benchmarks/results/<timestamp>-dicom.json and prints
the figures. The baseline is run before and after the service; both are reported, and
the faster is the one compared with. Also the "dicom" section of benchmarks/run.py
(`make bench`; smaller with --quick and --tiny, see ``SIZES``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PUSH_DELIVERED, PUSH_FAILED = 3, 4     # dicom.proto's PushState
#: (slices, rows = columns) of each mode of benchmarks/run.py.
SIZES = {"full": (300, 512), "quick": (60, 256), "tiny": (8, 64)}


def dcmtk(name: str) -> str:
    """dcmtk's program by its path: pynetdicom puts programs of the same names, with
    other options, into the virtual environment's bin."""
    for folder in ("/usr/bin", "/usr/local/bin"):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    found = shutil.which(name)
    if found is None or Path(found).parent == BIN:
        raise RuntimeError(f"dcmtk's {name} is not installed: run `make peers`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def write_series(folder: Path, slices: int, size: int, seed: int = 12) -> list[Path]:
    """A CT series: pydicom's CT slice's header, seeded int16 voxels, 1 mm apart."""
    folder.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(seed)
    series, study = generate_uid(), generate_uid()
    paths = []
    for i in range(slices):
        ds = template.copy()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [0.7, 0.7]
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        ds.SliceThickness = 1.0
        ds.PixelData = rng.integers(-1000, 2000, (size, size), dtype=np.int16).tobytes()
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


#: dcmtk as Debian builds it leaves Nagle's algorithm on unless TCP_NODELAY is set in its
#: environment; every instance then waits for the peer's delayed acknowledgement (about
#: 40 ms on Linux), for the baseline and the service alike. Scanners and PACS send with
#: it off, so the peers here do too.
PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}


def storescu(port: int, files, aet: str, called: str) -> float:
    """Seconds storescu takes to send every file (one association); fails loudly."""
    start = time.perf_counter()
    done = subprocess.run([dcmtk("storescu"), "-aet", aet, "-aec", called, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, env=PEER_ENV)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed: {done.stderr[-2000:]}")
    return took


def storescp(folder: Path, aet: str) -> tuple[subprocess.Popen, int]:
    """dcmtk's storescp; ``--fork``: one process per association, as a PACS accepts several
    at once."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([dcmtk("storescp"), "--fork", "-aet", aet, "+xa", "-uf", "-od",
                             str(folder), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=PEER_ENV, start_new_session=True)
    wait_port(port)
    return proc, port


def baseline(tmp: Path, files, name: str) -> float:
    proc, port = storescp(tmp / name, "BASESCP")
    try:
        return storescu(port, files, "SCANNER", "BASESCP")
    finally:
        stop_storescp(proc)
        shutil.rmtree(tmp / name, ignore_errors=True)


def stop_storescp(proc: subprocess.Popen) -> None:
    """The listener and the children it forked (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def service(tmp: Path, files, workers: int) -> dict:
    from medcompute.client import Client
    from medcompute.server.dicomnet.registry import NodeRegistry

    data, port = tmp / "data", free_port()
    registry = NodeRegistry(data)
    registry.add_ae_now("SCANNER", "local", "127.0.0.1")
    registry.close()
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "medcompute"), "serve", "--address", "127.0.0.1:0", "--data-dir", str(data),
         "--workers", str(workers), "--log-level", "warning", "--dicom-port", str(port),
         "--complete-on-release", "--series-quiet", "30"], stdout=subprocess.PIPE,
        stderr=log, text=True, start_new_session=True)
    dest_proc = None
    try:
        match = re.search(r"medcompute serving on (\S+)", proc.stdout.readline())
        if match is None:
            raise RuntimeError(f"the server did not start: {(tmp / 'serve.log').read_text()}")
        dest_proc, dest_port = storescp(tmp / "dest", "DESTSCP")
        with Client(match.group(1), timeout=600) as c:
            c.dicom.register_node("dest", "DESTSCP", "127.0.0.1", dest_port)
            c.dicom.create_rule("local", ["gaussian:sigma=1"], dicom_nodes=["dest"])
            took = storescu(port, files, "SCANNER", "MEDCOMPUTE")
            acked, acked_wall = time.perf_counter(), time.time()
            while len(list((tmp / "dest").iterdir())) < len(files):
                if time.perf_counter() - acked > 600:
                    raise TimeoutError("the derived series did not arrive in 600 s")
                time.sleep(0.02)
            arrived = time.perf_counter() - acked
            # The last file can land before the push's end is recorded.
            while (push := c.dicom.pushes()[0]).state not in (PUSH_DELIVERED, PUSH_FAILED):
                time.sleep(0.02)
            job = c.job(push.job_id)
            usage = [r for r in c.usage(include_records=True).records
                     if r.job_id == push.job_id]
        return {"seconds": took, "last_slice_to_arrival_s": arrived,
                "push_attempts": push.attempts,
                "breakdown_s": breakdown(acked_wall, arrived, job, push, usage),
                # Why a try of the push did not deliver (the server's warnings), if one did not.
                "push_retries": [line.strip() for line in
                                 (tmp / "serve.log").read_text(errors="replace").splitlines()
                                 if "dicom: push of job" in line]}
    finally:
        if dest_proc is not None:
            stop_storescp(dest_proc)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def breakdown(acked: float, arrived: float, job, push, usage) -> dict:
    """Where the time from the last slice acknowledged to the derived series arrived went,
    from the server's own timestamps (Unix seconds, one clock): the series completing and
    the routed job being made; the job waiting for a worker; the job running (reading the
    series, the kernel, writing the derived files); the push (fetching the result's files,
    the associations and every C-STORE); and what is left until the last file is on disk
    at the destination (the harness's poll). ``kernel`` is the part of ``job_run`` the
    worker measured around the kernels; the rest of it is reading and writing DICOM."""
    pushed = push.updated_at
    kernel = usage[0].compute_seconds if usage else None
    return {"completion": job.created_at - acked,
            "queue": job.started_at - job.created_at,
            "job_run": job.finished_at - job.started_at,
            "kernel": kernel,
            "push": pushed - job.finished_at,
            "arrival": acked + arrived - pushed}


def measure(slices: int, size: int, workers: int | None = None) -> dict:
    """The figures of one run: storescp, the service, storescp again."""
    tmp = Path(tempfile.mkdtemp(prefix="medcompute-dicom-bench-"))
    try:
        files = write_series(tmp / "series", slices, size)
        n = len(files)
        first = baseline(tmp, files, "base1")
        ours = service(tmp, files, workers or os.cpu_count() or 1)
        second = baseline(tmp, files, "base2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = min(first, second)
    return {
        "available": True,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slices": n, "size": size, "cpu_count": os.cpu_count(),
        "storescp_seconds": [first, second],
        "storescp_instances_per_s": n / base,
        "service_seconds": ours["seconds"],
        "service_instances_per_s": n / ours["seconds"],
        "service_over_storescp": (n / ours["seconds"]) / (n / base),
        "target_service_over_storescp": 0.7,
        "last_slice_to_derived_series_arrived_s": ours["last_slice_to_arrival_s"],
        "push_attempts": ours["push_attempts"],
        "push_retries": ours["push_retries"],
        "last_slice_to_derived_series_breakdown_s": ours["breakdown_s"],
    }


def run(sizes, log) -> dict:
    """The "dicom" section of benchmarks/run.py, sized by its mode."""
    slices, size = SIZES.get(sizes.name, SIZES["quick"])
    log(f"dicom: storescu of {slices} {size}x{size} slices into storescp and the service")
    return measure(slices, size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=None,
                        help="Dask workers of the server (default: one per core)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    result = measure(args.slices, args.size, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"{stamp}-dicom.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
