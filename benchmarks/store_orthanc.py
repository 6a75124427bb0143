"""The store against Orthanc on the same DICOM series: registering a CT series of
``--slices`` 512x512 int16 slices and getting its files back, next to Orthanc's REST API
(each file POSTed to /instances, then each fetched from /instances/{id}/file, one by one
over one keep-alive connection), measured in the same run, alternately.

    python benchmarks/store_orthanc.py [--slices 200] [--repeat 3]

- medcompute: ``medcompute serve`` (2 CPU workers), the client library in this process
  (what ``medcompute store put DIR`` and ``store get ID --dicom`` call, without the
  command line's start-up): register = ``Store.Register`` of the folder's files as one
  series (received, CRC-checked, parsed, decoded into voxels, both compressed, hashed,
  written, fsynced, renamed, committed); get = ``Store.Get`` of its DICOM files.
- Orthanc (Debian's, `make peers`), its default storage (files on disk, SQLite index).

Both keep what they acknowledged after a crash: medcompute fsyncs before it answers; Orthanc
does not fsync its files by default, so its figure is a ceiling for the same promise.
Figures are medians; the ratio is medcompute's rate over Orthanc's (above 1: faster).
Needs Orthanc (`make peers`). Writes benchmarks/results/<timestamp>-store-orthanc.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dicom_ingest import free_port, wait_port, write_series  # noqa: E402
from store_throughput import Process  # noqa: E402


def orthanc_program() -> str:
    for path in (shutil.which("Orthanc"), "/usr/sbin/Orthanc", "/usr/bin/Orthanc"):
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("Orthanc is not installed: run `make peers`")


class Orthanc:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True)
        self.port = free_port()
        config = {"Name": "bench", "HttpPort": self.port, "DicomPort": free_port(),
                  "StorageDirectory": str(folder / "storage"),
                  "IndexDirectory": str(folder / "index"), "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "Plugins": [], "KeepAlive": True}
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.proc = subprocess.Popen([orthanc_program(), str(folder / "orthanc.json")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        try:
            self.http.request(method, path, body=body)
        except (BrokenPipeError, ConnectionResetError):   # it closed the idle connection
            self.http.close()
            self.http.request(method, path, body=body)
        reply = self.http.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"Orthanc {method} {path}: {reply.status} {data[:200]!r}")
        return data

    def put(self, files: list[bytes]) -> list[str]:
        return [json.loads(self.call("POST", "/instances", f))["ID"] for f in files]

    def get(self, ids: list[str]) -> int:
        return sum(len(self.call("GET", f"/instances/{i}/file")) for i in ids)

    def delete(self, ids: list[str]) -> None:
        for i in ids:
            self.call("DELETE", f"/instances/{i}")

    def close(self) -> None:
        """Killed: every figure is taken by then, its folder is removed next, and Orthanc's
        own shutdown waits out its threads' polling (about 2 s)."""
        self.http.close()
        self.proc.kill()
        self.proc.wait(30)


def measure(slices: int, repeat: int) -> dict:
    from medcompute.client import Client

    tmp = Path(tempfile.mkdtemp(prefix="medcompute-store-orthanc-"))
    try:
        folder = tmp / "series"
        paths = write_series(folder, slices, 512)
        files = [p.read_bytes() for p in paths]
        nbytes = sum(map(len, files))
        server = Process([str(Path(sys.executable).parent / "medcompute"), "serve",
                          "--address", "127.0.0.1:0", "--data-dir", str(tmp / "data"),
                          "--workers", "2", "--log-level", "warning"], tmp / "serve.log")
        orthanc = Orthanc(tmp / "orthanc")
        times: dict[str, list[float]] = {k: [] for k in ("put", "get", "orthanc_put",
                                                          "orthanc_get")}
        try:
            with Client(server.address, timeout=600) as c:
                for k in range(repeat + 1):             # the first round warms up
                    # A new series each round (new UIDs and voxels): nothing is deduplicated.
                    if k:
                        paths = write_series(tmp / f"series{k}", slices, 512, seed=k)
                        files = [p.read_bytes() for p in paths]
                    t0 = time.perf_counter()
                    image = c.store.register([str(p) for p in paths])
                    t1 = time.perf_counter()
                    got = c.store.get(image, dicom=True)
                    t2 = time.perf_counter()
                    ids = orthanc.put(files)
                    t3 = time.perf_counter()
                    fetched = orthanc.get(ids)
                    t4 = time.perf_counter()
                    sent = sum(map(len, files))
                    if sum(map(len, got.files)) != sent or fetched != sent:
                        raise RuntimeError("a side did not give back the bytes it was sent")
                    orthanc.delete(ids)
                    c.store.delete(image)
                    if k:
                        for key, took in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                            times[key].append(took)
        finally:
            orthanc.close()
            server.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "available": True,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slices": slices, "bytes": nbytes, "cpu_count": os.cpu_count(), "repeat": repeat,
        "runs_seconds": times, "median_seconds": med,
        "put_over_orthanc": med["orthanc_put"] / med["put"],
        "get_over_orthanc": med["orthanc_get"] / med["get"],
        "target_over_orthanc": 1.0,
    }


#: Slices of each mode of benchmarks/run.py.
SIZES = {"full": 200, "quick": 40, "tiny": 4}


def run(sizes, log) -> dict:
    """The "orthanc" section of benchmarks/run.py, sized by its mode."""
    slices = SIZES.get(sizes.name, SIZES["quick"])
    log(f"orthanc: store put and get of {slices} 512x512 slices against Orthanc's REST API")
    return measure(slices, 3 if sizes.name == "full" else 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    result = measure(args.slices, args.repeat)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"{stamp}-store-orthanc.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs_seconds"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
