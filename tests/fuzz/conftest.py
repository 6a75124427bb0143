"""Property-based fuzzing of the Process call: profiles and the caller the fuzz tests share.

Profiles (hypothesis settings), chosen with ``MEDCOMPUTE_FUZZ_PROFILE``:

- ``bounded`` (the default, what ``make test`` and CI run): a few dozen examples per
  property, the whole folder in well under a minute.
- ``long`` (``make fuzz``): thousands of examples per property.

Failing examples are kept in ``.hypothesis/`` and replayed first by the next run.
"""

from __future__ import annotations

import os
import resource
import tracemalloc
import zlib

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2 as img
from medcompute.proto.v1 import operations_pb2 as ops
from medcompute.proto.v1 import processing_pb2 as pb

_COMMON = dict(
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)
settings.register_profile("bounded", max_examples=40, **_COMMON)
settings.register_profile("long", max_examples=2500, **_COMMON)
settings.load_profile(os.environ.get("MEDCOMPUTE_FUZZ_PROFILE", "bounded"))

#: Codes a hostile request may get. UNKNOWN, INTERNAL, UNAVAILABLE (the server went
#: away) and DEADLINE_EXCEEDED (it hung: every call has a generous deadline) may not.
ALLOWED = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
})
CALL_TIMEOUT = 60.0
#: Memory one call may make the server take (it runs in this process): the chunks in
#: flight, never a whole image or what a decompression bomb would inflate to.
MEMORY_BOUND = 128 << 20


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


class Outcome:
    """What one Process call gave: a status code, its details, and the decoded result."""

    def __init__(self, code, details="", header=None, data=b""):
        self.code = code
        self.details = details
        self.header = header
        self.data = data

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    def __repr__(self):
        return f"Outcome({self.code.name}, {self.details!r})"


class FuzzCaller:
    """Sends request messages, or raw request bytes, to the server under test."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES)])
        self._process = self.channel.stream_stream(
            "/medcompute.v1.ProcessingService/Process",
            request_serializer=lambda b: b,
            response_deserializer=pb.ProcessResponse.FromString)

    def close(self):
        self.channel.close()

    def call(self, messages, *, trace_memory: bool = False) -> Outcome:
        """Send ``messages`` (ProcessRequest messages, or bytes sent as they are).

        The peak memory of this process must not grow by more than MEMORY_BOUND; with
        ``trace_memory``, neither may the Python allocations made during the call (a
        check that does not depend on an earlier peak, at some cost in speed).
        """
        payloads = [m if isinstance(m, bytes) else m.SerializeToString() for m in messages]
        before = _peak_rss()
        if trace_memory:
            tracemalloc.start()
        try:
            responses = list(self._process(iter(payloads), timeout=CALL_TIMEOUT))
        except grpc.RpcError as exc:
            outcome = Outcome(exc.code(), exc.details() or "")
        else:
            outcome = _result(responses)
        finally:
            traced = tracemalloc.get_traced_memory()[1] if trace_memory else 0
            tracemalloc.stop()
        grown = max(_peak_rss() - before, traced)
        assert grown < MEMORY_BOUND, f"the call took {grown >> 20} MiB of the server's memory"
        return outcome

    def check(self, messages, *, secrets=(), trace_memory: bool = False) -> Outcome:
        """The property every request must have: success, or a status a caller can act
        on that quotes none of ``secrets``; and the server still serves afterwards."""
        outcome = self.call(messages, trace_memory=trace_memory)
        # Shown by --hypothesis-show-statistics: which outcomes the examples reached.
        event(outcome.code.name, outcome.details.split(":", 1)[0] if not outcome.ok else "")
        assert outcome.ok or outcome.code in ALLOWED, outcome
        for secret in secrets:
            assert secret not in outcome.details, f"the message quotes patient data: {outcome}"
        self.assert_alive()
        return outcome

    def assert_alive(self) -> None:
        """A tiny valid request still succeeds."""
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        head = pb.ProcessHeader(
            pipeline=[ops.Operation(gaussian=ops.GaussianOp(sigma=[0.0]))],
            input=img.ImageSource(inline=img.ImageDescriptor(
                encoding=img.ENCODING_RAW, shape=a.shape, dtype=img.DATA_TYPE_FLOAT32,
                size=a.nbytes,
                crc32=wire.crc32(a))))
        outcome = self.call([pb.ProcessRequest(header=head),
                             pb.ProcessRequest(chunk=img.Chunk(data=a.tobytes()))])
        assert outcome.ok, f"the server stopped serving: {outcome}"
        np.testing.assert_array_equal(np.frombuffer(outcome.data, np.float32).reshape(3, 4), a)


def _result(responses) -> Outcome:
    """A successful call's result, checked for consistency: one header, then chunks
    that decode to the size and checksum the header declares."""
    assert responses and responses[0].WhichOneof("msg") == "header", "no result header"
    header = responses[0].header
    out = header.output
    decoder = wire.ChunkDecoder(out.compression, "result")
    data = bytearray()
    for r in responses[1:]:
        assert r.WhichOneof("msg") == "chunk", "a second result header"
        assert not r.chunk.HasField("operand"), "a result chunk names an operand"
        data += decoder.decode(r.chunk.data)
    assert len(data) == out.size, f"result has {len(data)} bytes, its header says {out.size}"
    assert zlib.crc32(data) == out.crc32, "result checksum mismatch"
    if out.encoding == img.ENCODING_RAW:
        itemsize = wire.dtype_from_proto(out.dtype, "result.dtype").itemsize
        assert out.size == int(np.prod(out.shape)) * itemsize, "result shape and size disagree"
    else:
        assert sum(out.file_sizes) == out.size, "result file sizes and size disagree"
    return Outcome(grpc.StatusCode.OK, header=header, data=bytes(data))


@pytest.fixture(scope="session")
def fuzz(server) -> FuzzCaller:
    """A caller of the session's server (a real server and Dask cluster)."""
    caller = FuzzCaller(server.address)
    yield caller
    caller.close()
