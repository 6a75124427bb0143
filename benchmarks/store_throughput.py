"""Image store throughput: register and fetch a 64 MiB int16 volume, next to a bare gRPC
stream of the same bytes measured in the same run.

    python benchmarks/store_throughput.py [--mib 64] [--repeat 5]

Both servers run in processes of their own (no GIL shared with the client):
- ``medcompute serve`` (one Dask worker); upload = ``Store.Register`` of the volume
  (received, CRC-checked, compressed, hashed, written, fsynced, renamed, committed), a
  slightly different volume each time so every call is a new image; download =
  ``Store.Get`` of its voxels;
- a bare gRPC echo server: the same 1 MiB chunks streamed in (client stream) and out
  (server stream), with nothing done to them: the transport's ceiling on this machine.

Figures are medians over ``--repeat`` runs after one warm-up, in MB/s (10^6 bytes/s)
of decoded volume bytes; the ratio column is store / bare stream.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from medcompute.client import StoreClient

CHUNK = 1 << 20
_SINK = "/bench.Echo/Sink"
_SOURCE = "/bench.Echo/Source"
LIMIT = [("grpc.max_receive_message_length", 5 << 20), ("grpc.max_send_message_length", 5 << 20)]


# -- the bare gRPC stream ----------------------------------------------------------------------

async def _echo_server() -> None:
    async def sink(request_iterator, context):
        n = 0
        async for piece in request_iterator:
            n += len(piece)
        return n.to_bytes(8, "little")

    async def source(request, context):
        total = int.from_bytes(request, "little")
        piece = bytes(CHUNK)
        for _ in range(total // CHUNK):
            yield piece

    identity = {"request_deserializer": None, "response_serializer": None}
    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Sink": grpc.stream_unary_rpc_method_handler(sink, **identity),
        "Source": grpc.unary_stream_rpc_method_handler(source, **identity)})
    server = grpc.aio.server(options=LIMIT)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"echo serving on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


class Process:
    """A server process that prints ``... serving on HOST:PORT`` once it accepts calls."""

    def __init__(self, args: list[str], log: Path):
        self.log = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.line = self.proc.stdout.readline()
        match = re.search(r"serving on (\S+)", line)
        if match is None:
            self.close()
            raise SystemExit(f"{args[0]} did not start; see {log}")
        self.address = match.group(1)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _median_rate(nbytes: int, seconds: list[float]) -> float:
    return nbytes / statistics.median(seconds) / 1e6


def _volume(mib: int) -> np.ndarray:
    """A CT-like int16 volume: smooth anatomy-ish structure plus noise."""
    slices = mib * CHUNK // (512 * 512 * 2)
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:slices, :512, :512]
    body = 1000 * np.exp(-((y - 256) ** 2 + (x - 256) ** 2) / 2 / 150.0**2)
    vol = body + 80 * np.sin(z / 7.0) + rng.normal(0, 20, (slices, 512, 512)) - 1000
    return vol.astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="volume size in MiB (default 64)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        asyncio.run(_echo_server())
        return 0

    vol = _volume(args.mib)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        medcompute = str(Path(sys.executable).parent / "medcompute")
        store_server = Process([medcompute, "serve", "--address", "127.0.0.1:0", "--data-dir",
                                str(tmp / "data"), "--workers", "1", "--log-level", "warning"],
                               tmp / "serve.log")
        echo_server = Process([sys.executable, __file__, "--echo-server"], tmp / "echo.log")
        try:
            rows = _measure(vol, args.repeat, store_server.address, echo_server.address)
        finally:
            store_server.close()
            echo_server.close()
    print(f"{args.mib} MiB int16 volume {vol.shape}, median of {args.repeat} runs, MB/s")
    print(f"{'':28}{'store':>10}{'bare gRPC':>12}{'ratio':>8}")
    for name, store_rate, bare in rows:
        print(f"{name:28}{store_rate:>10.0f}{bare:>12.0f}{store_rate / bare:>8.2f}")
    return 0


def _measure(vol: np.ndarray, repeat: int, store_address: str, echo_address: str):
    nbytes = vol.nbytes
    channel = grpc.insecure_channel(echo_address, options=LIMIT)
    sink = channel.stream_unary(_SINK)
    source = channel.unary_stream(_SOURCE)
    payload = memoryview(vol.reshape(-1)).cast("B")

    def bare_up():
        got = sink(bytes(payload[i:i + CHUNK]) for i in range(0, nbytes, CHUNK))
        assert int.from_bytes(got, "little") == nbytes

    def bare_down():
        assert sum(len(p) for p in source(nbytes.to_bytes(8, "little"))) == nbytes

    def rates(store_run, bare_run):
        store_run()
        bare_run()                                  # warm-up
        store_s = [_timed(store_run) for _ in range(repeat)]
        bare_s = [_timed(bare_run) for _ in range(repeat)]
        return _median_rate(nbytes, store_s), _median_rate(nbytes, bare_s)

    rows = []
    with StoreClient(store_address, timeout=600) as store:
        stored = store.register(vol)
        variants = iter(range(1, 10**6))
        for label, compression in (("upload (Register)", "none"),
                                   ("upload, blosc transfer", "blosc")):
            fresh = [vol.copy() for _ in range(repeat + 1)]
            for v in fresh:
                v.flat[0] = next(variants)          # a new image each time
            pending = iter(fresh)
            rows.append((label, *rates(
                lambda c=compression, p=pending: store.register(next(p), compression=c),
                bare_up)))
            del fresh, pending
        for label, compression in (("download (Get voxels)", "none"),
                                   ("download, blosc transfer", "blosc")):
            rows.append((label, *rates(
                lambda c=compression: store.get(stored, compression=c), bare_down)))
    channel.close()
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
