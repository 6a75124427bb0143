"""A raw gRPC streaming echo: the transport ceiling the service is measured against.

One stream-stream method with bytes in and out (generic handlers, no .proto): the
caller streams an 8-byte header (how many bytes it wants back) and then its chunks;
the server takes them all in and streams the requested bytes back in chunks of the
same size. The server is a grpc.aio server in its own process, like the real one.

    python benchmarks/echo.py --serve       # prints "echo serving on HOST:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import re
import struct
import subprocess
import sys
import time

import grpc

METHOD = "/medcompute.bench.Echo/Stream"
CHUNK = 1 << 20
LIMIT = (4 << 20) + (64 << 10)  # the service's message limit
_OPTIONS = [("grpc.max_receive_message_length", LIMIT),
            ("grpc.max_send_message_length", LIMIT)]


def _identity(data: bytes) -> bytes:
    return data


async def _stream(requests, context):
    header = None
    received = 0
    async for message in requests:
        if header is None:
            header = message
            continue
        received += len(message)
    (wanted,) = struct.unpack("<Q", header)
    block = bytes(CHUNK)
    sent = 0
    while sent < wanted:
        n = min(CHUNK, wanted - sent)
        yield block if n == CHUNK else block[:n]
        sent += n


async def _serve(address: str) -> None:
    server = grpc.aio.server(options=_OPTIONS)
    handler = grpc.method_handlers_generic_handler("medcompute.bench.Echo", {
        "Stream": grpc.stream_stream_rpc_method_handler(
            _stream, request_deserializer=_identity, response_serializer=_identity)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(address)
    await server.start()
    print(f"echo serving on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


class EchoServer:
    """The echo server in its own process; the context gives its address."""

    def __enter__(self) -> str:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"echo serving on (\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"the echo server did not start: {line!r}")
        return match.group(1)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class EchoClient:
    """Streams ``payload`` up and receives ``reply_bytes`` back, as the real client does:
    each chunk copied into a message, the reply assembled into one buffer."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address, options=_OPTIONS)
        self.call = self.channel.stream_stream(METHOD, request_serializer=_identity,
                                               response_deserializer=_identity)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> EchoClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def echo(self, payload, reply_bytes: int) -> float:
        """Seconds for one round: upload ``payload``, download ``reply_bytes``."""
        view = memoryview(payload).cast("B")

        def requests():
            yield struct.pack("<Q", reply_bytes)
            for at in range(0, len(view), CHUNK):
                yield bytes(view[at:at + CHUNK])

        t0 = time.perf_counter()
        buffer = bytearray(reply_bytes)
        got = 0
        for chunk in self.call(requests(), timeout=600):
            buffer[got:got + len(chunk)] = chunk
            got += len(chunk)
        seconds = time.perf_counter() - t0
        if got != reply_bytes:
            raise RuntimeError(f"echo: {got} of {reply_bytes} bytes came back")
        return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="run the echo server")
    parser.add_argument("--address", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.address))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
