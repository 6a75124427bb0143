"""DICOMweb against the gRPC API on the same server and data, in one run, alternately.

- WADO-RS retrieval of a CT series of ``slices`` 512x512 int16 slices (``GET
  /dicomweb/studies/{s}/series/{x}``, multipart/related of the stored files, read whole by
  ``requests`` in one go) against ``Store.Get`` of the same image's DICOM files through the client
  library: MB/s of the files' bytes, medians, and their ratio (above 1: WADO-RS faster).
- QIDO-RS latency with ``instances`` instances stored (series of 100 small slices, each
  registered through the gRPC API): studies of a patient (``/studies?PatientID=``)
  against ``Store.Find`` by patient id; the instances of one series
  (``/studies/{s}/series/{x}/instances``) against ``Store.Find`` by series UID; every
  instance (``/instances``) against ``Store.Find`` of every image. The first QIDO call
  reads the headers it has not seen from the files and keeps them in the catalog
  (reported as ``cold``); the medians are of the calls after it. The server is then
  restarted on the same data and each query asked once more (``cold_after_restart``:
  answered from the catalog's DICOM JSON, no file read), with its ratio to ``cold``
  (below 1: the restarted server's first answer is faster than the first one from files).

    python benchmarks/dicomweb_bench.py [--slices 300] [--instances 10000] [--repeat 5]

Writes benchmarks/results/<timestamp>-dicomweb.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dicom_ingest import write_series  # noqa: E402
from store_throughput import Process  # noqa: E402

#: (slices of the WADO series, instances for QIDO) of each mode of benchmarks/run.py.
SIZES = {"full": (300, 10000), "quick": (100, 2000), "tiny": (4, 100)}
_PER_SERIES = 100


class Server(Process):
    """``medcompute serve`` with its HTTP port; the gRPC address and the DICOMweb URL."""

    def __init__(self, data: Path, log: Path):
        super().__init__(
            [str(Path(sys.executable).parent / "medcompute"), "serve", "--address",
             "127.0.0.1:0", "--data-dir", str(data), "--workers", "2", "--http-port", "0",
             "--log-level", "warning"], log)
        web_at = re.search(r"DICOMweb on (\S+/dicomweb)", self.line)
        if web_at is None:
            self.close()
            raise SystemExit(f"medcompute serve did not start its HTTP port; see {log}")
        self.url = web_at.group(1)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _whole(session: requests.Session, url: str) -> tuple[int, bytes]:
    """The status and whole body of a GET, read in one go (``requests``' own ``.content``
    reads 10 KiB at a time, which would be the figure's limit)."""
    with session.get(url, stream=True, timeout=600) as answer:
        return answer.status_code, answer.raw.read()


def measure(slices: int, instances: int, repeat: int) -> dict:
    import pydicom

    from medcompute.client import Client

    tmp = Path(tempfile.mkdtemp(prefix="medcompute-dicomweb-bench-"))
    session = requests.Session()
    try:
        paths = write_series(tmp / "wado", slices, 512)
        nbytes = sum(p.stat().st_size for p in paths)
        first = pydicom.dcmread(paths[0], stop_before_pixels=True)
        server = Server(tmp / "data", tmp / "serve.log")
        try:
            with Client(server.address, timeout=600) as c:
                image = c.store.register([str(p) for p in paths])
                wado_url = (f"{server.url}/studies/{first.StudyInstanceUID}/series/"
                            f"{first.SeriesInstanceUID}")
                wado, grpc_get = [], []
                for k in range(repeat + 1):                 # the first round warms up
                    took, (status, body) = _timed(lambda: _whole(session, wado_url))
                    if status != 200 or len(body) < nbytes:
                        raise RuntimeError(f"WADO-RS answered {status}")
                    took_grpc, got = _timed(lambda: c.store.get(image, dicom=True))
                    if sum(map(len, got.files)) != nbytes:
                        raise RuntimeError("Store.Get did not give back the files")
                    if k:
                        wado.append(took)
                        grpc_get.append(took_grpc)

                series = []
                for s in range(max(1, instances // _PER_SERIES)):
                    files = write_series(tmp / f"q{s}", _PER_SERIES, 32, seed=s)
                    c.store.register([str(p) for p in files])
                    series.append(pydicom.dcmread(files[0], stop_before_pixels=True))
                one = series[0]
                queries = {
                    "patient_studies": (
                        f"{server.url}/studies?PatientID={one.PatientID}",
                        lambda: c.store.find(patient_id=str(one.PatientID))),
                    "series_instances": (
                        f"{server.url}/studies/{one.StudyInstanceUID}/series/"
                        f"{one.SeriesInstanceUID}/instances",
                        lambda: c.store.find(series_instance_uid=one.SeriesInstanceUID)),
                    "all_instances": (f"{server.url}/instances",
                                      lambda: c.store.find()),
                }
                latency: dict = {}
                for name, (url, grpc_call) in queries.items():
                    cold, answer = _timed(lambda url=url: session.get(url, timeout=600))
                    if answer.status_code != 200:
                        raise RuntimeError(f"QIDO-RS answered {answer.status_code}")
                    found = len(answer.json())
                    runs, grpc_runs = [], []
                    for _ in range(repeat):
                        runs.append(_timed(lambda url=url: session.get(url, timeout=600))[0])
                        grpc_runs.append(_timed(grpc_call)[0])
                    latency[name] = {
                        "results": found, "cold_seconds": cold,
                        "qido_seconds": _median(runs), "grpc_find_seconds": _median(grpc_runs),
                        "qido_over_grpc": _median(runs) / _median(grpc_runs)}
                # The same queries' first answers after a restart: from the catalog.
                first_url = server.url
                server.close()
                server = Server(tmp / "data", tmp / "serve-restarted.log")
                for name, (url, _) in queries.items():
                    url = server.url + url[len(first_url):]
                    cold, answer = _timed(lambda url=url: session.get(url, timeout=600))
                    if answer.status_code != 200 or len(answer.json()) != \
                            latency[name]["results"]:
                        raise RuntimeError(f"QIDO-RS after a restart answered "
                                           f"{answer.status_code}")
                    latency[name]["cold_after_restart_seconds"] = cold
                    latency[name]["restart_cold_over_cold"] = cold / latency[name][
                        "cold_seconds"]
        finally:
            server.close()
    finally:
        session.close()
        shutil.rmtree(tmp, ignore_errors=True)
    mb = nbytes / 1e6
    return {
        "available": True,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "repeat": repeat,
        "wado": {"slices": slices, "bytes": nbytes,
                 "wado_mb_per_s": mb / _median(wado), "grpc_get_mb_per_s": mb / _median(grpc_get),
                 "wado_over_grpc": _median(grpc_get) / _median(wado),
                 "runs_seconds": {"wado": wado, "grpc_get": grpc_get}},
        "qido": {"instances": len(series) * _PER_SERIES + slices, "latency": latency},
    }


def run(sizes, log) -> dict:
    """The section of benchmarks/run.py (``sizes.name``: full, quick or tiny)."""
    slices, instances = SIZES.get(getattr(sizes, "name", "quick"), SIZES["quick"])
    out = measure(slices, instances, 3 if slices < 300 else 5)
    w = out["wado"]
    log(f"dicomweb: WADO-RS {w['wado_mb_per_s']:.0f} MB/s, Store.Get "
        f"{w['grpc_get_mb_per_s']:.0f} MB/s ({w['slices']} slices)")
    for name, q in out["qido"]["latency"].items():
        log(f"dicomweb: QIDO {name} {q['qido_seconds'] * 1e3:.1f} ms, Store.Find "
            f"{q['grpc_find_seconds'] * 1e3:.1f} ms ({out['qido']['instances']} instances); "
            f"cold {q['cold_seconds'] * 1e3:.0f} ms, cold after a restart "
            f"{q['cold_after_restart_seconds'] * 1e3:.0f} ms "
            f"(x{q['restart_cold_over_cold']:.2f})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = measure(args.slices, args.instances, args.repeat)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"{stamp}-dicomweb.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({"wado": {k: v for k, v in result["wado"].items() if k != "runs_seconds"},
                      "qido": result["qido"]}, indent=1))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
