"""Fuzzing Process with hostile headers and chunk streams.

Every example is one call to the real server: it succeeds (and its result is
consistent with its header), or fails with a status a caller can act on, never
UNKNOWN or INTERNAL; and a tiny valid call succeeds right after it.
"""

from __future__ import annotations

import math
import struct

import blosc2  # noqa: F401 - imported here: its import uses `random`, not allowed in a strategy
import numpy as np
import pytest
import zstandard
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2 as img
from medcompute.proto.v1 import operations_pb2 as ops
from medcompute.proto.v1 import processing_pb2 as pb

# Each example takes well under a second; the timeout follows the profile's size.
pytestmark = [pytest.mark.integration,
              pytest.mark.timeout(120 + 2 * settings().max_examples)]

INF = math.inf

# -- values ----------------------------------------------------------------------------------

DOUBLES = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0, -1.0, -3.5, 1e3, 1e6, 1e12, 1e300,
                     -1e300, 5e-324, 1e-300, 1.7976931348623157e308, math.nan, INF, -INF]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _integers(bits: int, signed: bool):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    edges = sorted({v for v in (0, 1, 2, 3, 5, 7, -1, -2, -5, 255, 65535, 1 << 20, lo, hi,
                                (1 << 31) - 1, 1 << 31) if lo <= v <= hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


SCALARS = {
    FD.TYPE_DOUBLE: DOUBLES,
    FD.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    FD.TYPE_INT32: _integers(32, True),
    FD.TYPE_SINT32: _integers(32, True),
    FD.TYPE_SFIXED32: _integers(32, True),
    FD.TYPE_INT64: _integers(64, True),
    FD.TYPE_SINT64: _integers(64, True),
    FD.TYPE_SFIXED64: _integers(64, True),
    FD.TYPE_UINT32: _integers(32, False),
    FD.TYPE_FIXED32: _integers(32, False),
    FD.TYPE_UINT64: _integers(64, False),
    FD.TYPE_FIXED64: _integers(64, False),
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_STRING: st.one_of(st.sampled_from(["", "0", "img-1", "../../etc/passwd", "x" * 300]),
                              st.text(max_size=40)),
    FD.TYPE_BYTES: st.binary(max_size=64),
}


def _mostly(common, rare, one_in: int = 8):
    """``common`` values, and now and then (one in ``one_in``) ``rare`` ones."""
    # Not an end of the range: hypothesis draws those far more often than the others.
    return st.integers(0, one_in - 1).flatmap(lambda k: rare if k == one_in // 2 else common)


#: Values that mostly make sense for the field, so that examples get past validation and
#: reach the kernels on the workers; the hostile ones still come now and then.
PLAUSIBLE = {
    **{t: _mostly(st.sampled_from([-2, -1, 0, 1, 2]), s) for t, s in SCALARS.items()
       if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_INT64)},
    **{t: _mostly(st.sampled_from([0, 1, 2, 3, 5]), s) for t, s in SCALARS.items()
       if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32, FD.TYPE_UINT64, FD.TYPE_FIXED64)},
    FD.TYPE_DOUBLE: _mostly(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), DOUBLES),
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_STRING: _mostly(st.just(""), SCALARS[FD.TYPE_STRING]),
    FD.TYPE_BYTES: SCALARS[FD.TYPE_BYTES],
}


def _enum_values(field, plausible: bool):
    known = st.sampled_from([v.number for v in field.enum_type.values])
    unknown = _integers(32, True)
    return _mostly(known, unknown, 12) if plausible else st.one_of(known, unknown)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def unknown_fields(draw, descriptor) -> bytes:
    """Well-formed wire bytes of fields ``descriptor`` does not have, or of known
    field numbers with the wrong wire type."""
    numbers = [f.number for f in descriptor.fields] or [0]
    number = draw(st.one_of(
        st.integers(1, 64).map(lambda n: n + max(numbers)),
        st.integers(1, (1 << 29) - 1),
        st.sampled_from(numbers).map(lambda n: max(n, 1))))
    wire_type = draw(st.sampled_from([0, 1, 2, 5]))
    key = _varint(number << 3 | wire_type)
    if wire_type == 0:
        return key + _varint(draw(st.integers(0, (1 << 64) - 1)))
    if wire_type == 1:
        return key + draw(st.binary(min_size=8, max_size=8))
    if wire_type == 5:
        return key + draw(st.binary(min_size=4, max_size=4))
    payload = draw(st.binary(max_size=16))
    return key + _varint(len(payload)) + payload


@st.composite
def messages(draw, cls, overrides=None, plausible: bool = False):
    """A message of class ``cls`` with random values in every field, built from its
    descriptor: numbers including NaN, infinities, negatives and huge ones, enum numbers
    this server does not know, each oneof set to one member or none, and sometimes
    unknown fields appended. ``overrides`` maps a field name to the strategy to use;
    ``plausible`` draws mostly values that make sense (see PLAUSIBLE)."""
    overrides = overrides or {}
    values = PLAUSIBLE if plausible else SCALARS
    desc = cls.DESCRIPTOR
    msg = cls()
    chosen = {}
    for o in desc.oneofs:  # (an optional field is a oneof of its own, named "_" + its name)
        names = [f.name for f in o.fields]
        chosen[o.name] = draw(st.sampled_from(
            names if plausible and not o.name.startswith("_") else [None, *names]))
    # A length comes as NAME (voxels) or NAME_mm: plausibly, one of the two.
    pairs = {f.name[:-3] for f in desc.fields
             if f.name.endswith("_mm") and f.name[:-3] in desc.fields_by_name}
    pairs |= {name + "_mm" for name in pairs}
    unused = {draw(st.sampled_from([n, n + "_mm"])) for n in pairs if not n.endswith("_mm")}
    for field in desc.fields:
        oneof = field.containing_oneof
        if field.name in overrides:
            value = overrides[field.name]
        elif plausible and field.name in unused:
            continue
        elif oneof is not None and chosen[oneof.name] != field.name:
            continue
        elif oneof is None and not field.is_repeated and not draw(st.booleans()):
            continue  # left at its default
        elif field.type == FD.TYPE_MESSAGE:
            value = messages(field.message_type._concrete_class, plausible=plausible)
        elif field.type == FD.TYPE_ENUM:
            value = _enum_values(field, plausible)
        else:
            value = values[field.type]
        if field.is_repeated:
            if not plausible:
                items = draw(st.lists(value, max_size=5))
            elif field.name in pairs:  # one value for every axis, mostly
                items = draw(_mostly(st.lists(value, min_size=1, max_size=1),
                                     st.lists(value, max_size=4), 4))
            elif field.name == "pipeline":
                items = draw(st.lists(value, min_size=1, max_size=3))
            else:
                items = draw(_mostly(st.just([]), st.lists(value, max_size=4), 2))
            if field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
                container = getattr(msg, field.name)   # a map: its entries by key
                for item in items:
                    if field.message_type.fields_by_name["value"].type == FD.TYPE_MESSAGE:
                        container[item.key].CopyFrom(item.value)
                    else:
                        container[item.key] = item.value
            elif field.type == FD.TYPE_MESSAGE:
                for item in items:
                    getattr(msg, field.name).add().CopyFrom(item)
            else:
                getattr(msg, field.name).extend(items)
        elif field.type == FD.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(draw(value))
        else:
            setattr(msg, field.name, draw(value))
    if draw(_mostly(st.just(False), st.just(True), 20 if plausible else 8)):
        try:
            msg = cls.FromString(msg.SerializeToString() + draw(unknown_fields(desc)))
        except DecodeError:  # a known message field given bytes that do not parse as one
            pass
    return msg


# -- images ----------------------------------------------------------------------------------

DTYPES = sorted(wire.DTYPES)
COMPRESSIONS = [img.COMPRESSION_NONE, img.COMPRESSION_ZSTD, img.COMPRESSION_BLOSC]


@st.composite
def arrays(draw, shape=None, max_side=6):
    """A small array of any wire dtype, random, with a few extreme values put in."""
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=1, max_size=4)))
    dtype = wire.DTYPES[draw(st.sampled_from(DTYPES))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        a = rng.normal(0, 1000, size=shape).astype(dtype)
        extremes = [0.0, -0.0, 1e30, -1e30, 1e-40, math.nan, INF, -INF]
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        extremes = [0, int(info.min), int(info.max)]
    flat = a.reshape(-1)
    for _ in range(draw(st.integers(0, 3))):
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(extremes))
    return a


def descriptor(a: np.ndarray, compression=img.COMPRESSION_NONE,
               spacing=None) -> img.ImageDescriptor:
    return img.ImageDescriptor(
        encoding=img.ENCODING_RAW, shape=a.shape, dtype=wire.dtype_to_proto(a.dtype), size=a.nbytes,
        crc32=wire.crc32(a), compression=compression, spacing_mm=spacing or ())


def chunk_payloads(data: bytes, compression: int, itemsize: int, cuts=()) -> list[bytes]:
    """``data`` cut at ``cuts`` (else in one piece), each piece compressed on its own."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] or [b""]
    out = []
    for piece in pieces:
        size = itemsize if len(piece) % itemsize == 0 else 1  # blosc needs whole items
        out.extend(wire.iter_chunks(piece, compression=compression, itemsize=size)
                   if piece else [b""])
    return out


SPACINGS = st.one_of(
    st.none(),
    st.lists(st.sampled_from([0.5, 1.0, 2.5]), min_size=1, max_size=4),
    st.lists(DOUBLES, max_size=5),
)
TWEAKS = ["size", "crc", "nocrc", "dtype", "shape"]


@st.composite
def inline_images(draw, shape=None, plausible=False):
    """An inline image: a consistent descriptor with the chunks that carry its array
    (now and then a little wrong), or a random descriptor with random chunks."""
    if draw(_mostly(st.just(False), st.just(True), 30 if plausible else 5)):
        desc = draw(messages(img.ImageDescriptor))
        payloads = draw(st.lists(st.binary(max_size=300), max_size=3))
        return desc, payloads
    a = draw(arrays(shape))
    compression = draw(st.sampled_from(COMPRESSIONS))
    if plausible:
        per_axis = st.lists(st.sampled_from([0.5, 1.0, 2.5]), min_size=a.ndim, max_size=a.ndim)
        spacing = draw(_mostly(per_axis, st.none() | SPACINGS, 4))
        tweak = draw(_mostly(st.just("none"), st.sampled_from(TWEAKS), 20))
    else:
        spacing = draw(SPACINGS)
        if spacing and draw(st.booleans()):
            spacing = [spacing[0]] * a.ndim
        tweak = draw(st.sampled_from(["none"] * 6 + TWEAKS))
    desc = descriptor(a, compression, spacing)
    if tweak == "size":
        desc.size = draw(_integers(64, False))
    elif tweak == "crc":
        desc.crc32 = draw(_integers(32, False))
    elif tweak == "nocrc":
        desc.ClearField("crc32")
    elif tweak == "dtype":
        desc.dtype = draw(st.integers(-3, 12))
    elif tweak == "shape":
        del desc.shape[:]
        desc.shape.extend(draw(st.lists(_integers(64, False), max_size=6)))
    return desc, chunk_payloads(a.tobytes(), compression, a.dtype.itemsize)


def request(header: pb.ProcessHeader, images) -> list[pb.ProcessRequest]:
    """The header, then the chunks of each image in turn."""
    out = [pb.ProcessRequest(header=header)]
    for i, payloads in enumerate(images):
        out.extend(pb.ProcessRequest(chunk=wire.image_chunk(i, p)) for p in payloads)
    return out


# -- 1. headers ------------------------------------------------------------------------------

@st.composite
def sources(draw, shape=None, plausible=False):
    """An image source: mostly inline (and its chunks), sometimes an id or random."""
    kind = draw(_mostly(st.just("inline"), st.sampled_from(["id", "random"]),
                        20 if plausible else 5))
    if kind == "inline":
        desc, payloads = draw(inline_images(shape, plausible))
        return img.ImageSource(inline=desc), payloads
    if kind == "id":
        return img.ImageSource(image_id=draw(SCALARS[FD.TYPE_STRING])), []
    return draw(messages(img.ImageSource)), draw(st.lists(st.binary(max_size=64), max_size=2))


@st.composite
def headers(draw, plausible=False):
    """A whole request: a random header (every op type, option and enum number) over
    small images whose chunks follow."""
    source, payloads = draw(sources(plausible=plausible))
    shape = tuple(source.inline.shape) if source.HasField("inline") else None
    if not (shape and len(shape) <= 4 and all(1 <= n <= 64 for n in shape)):
        shape = None  # operands get shapes of their own
    shapes = [s for s in (shape, shape[1:] if shape else None) if s] or [None]
    operands = draw(st.lists(
        st.sampled_from(shapes).flatmap(lambda s: sources(s, plausible)), max_size=2))
    overrides = {
        "pipeline": messages(ops.Operation, plausible=plausible),
        "input": st.just(source),
        "operands": st.just(img.ImageSource()),
    }
    if plausible:  # options this cluster can honour, mostly
        overrides.update(
            device=_mostly(st.sampled_from([pb.DEVICE_AUTO, pb.DEVICE_CPU]),
                           st.sampled_from([pb.DEVICE_GPU, 7])),
            compute_dtype=_mostly(st.sampled_from([0, img.DATA_TYPE_FLOAT32,
                                                   img.DATA_TYPE_FLOAT64]),
                                  st.integers(-1, 9)),
            output_format=_mostly(st.just(pb.OUTPUT_FORMAT_RAW), st.integers(-1, 3)))
    header = draw(messages(pb.ProcessHeader, plausible=plausible, overrides=overrides))
    del header.operands[:]
    for s, _ in operands:
        header.operands.add().CopyFrom(s)
    return header, [payloads] + [p for _, p in operands]


@given(headers())
def test_random_headers(fuzz, case):
    header, images = case
    fuzz.check(request(header, images))


@given(headers(plausible=True))
def test_plausible_pipelines(fuzz, case):
    """Mostly valid requests with mostly sensible parameters: they reach the kernels."""
    header, images = case
    fuzz.check(request(header, images))


# -- 2. chunk streams ------------------------------------------------------------------------

@st.composite
def streams(draw):
    """A correct descriptor and a chunk stream that is right, or wrong in one or more ways.

    Returns the messages and whether the stream is a correct encoding of the image.
    """
    a = draw(arrays(max_side=40))
    compression = draw(st.sampled_from(COMPRESSIONS))
    header = pb.ProcessHeader(
        pipeline=[ops.Operation(gaussian=ops.GaussianOp(sigma=[0.0]))],
        input=img.ImageSource(inline=descriptor(a, compression)))
    data = a.tobytes()
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=6))
    payloads = chunk_payloads(data, compression, a.dtype.itemsize, cuts)
    chunks = [(0, p) for p in payloads]
    faults = draw(st.lists(st.sampled_from(FAULTS), max_size=3, unique=True))
    for fault in faults:
        chunks = fault(draw, chunks, data, compression)
    messages = [pb.ProcessRequest(header=header)]
    for index, payload in chunks:
        if index == "header":
            messages.append(pb.ProcessRequest(header=header))
        elif index == "raw":
            messages.append(payload)
        else:
            messages.append(pb.ProcessRequest(chunk=wire.image_chunk(index, payload)))
    return a, compression, messages, faults


def _truncate(draw, chunks, data, compression):
    """The stream stops early: chunks dropped from the end, or the last one cut short."""
    keep = draw(st.integers(0, max(len(chunks) - 1, 0)))
    chunks = chunks[:keep + 1]
    index, last = chunks[-1]
    return chunks[:-1] + [(index, last[:draw(st.integers(0, max(len(last) - 1, 0)))])]


def _too_long(draw, chunks, data, compression):
    """More bytes than declared: an extra chunk, or a chunk repeated."""
    extra = draw(st.one_of(st.just(chunks[-1][1]), st.binary(min_size=1, max_size=64)))
    at = draw(st.integers(0, len(chunks)))
    return chunks[:at] + [(0, extra)] + chunks[at:]


def _wrong_image(draw, chunks, data, compression):
    """A chunk sent to an image index the request does not have."""
    at = draw(st.integers(0, len(chunks) - 1))
    index = draw(st.integers(1, (1 << 32) - 1))
    return chunks[:at] + [(index, chunks[at][1])] + chunks[at + 1:]


def _second_header(draw, chunks, data, compression):
    at = draw(st.integers(0, len(chunks)))
    return chunks[:at] + [("header", b"")] + chunks[at:]


def _garbage(draw, chunks, data, compression):
    """A chunk replaced by bytes that are not what the descriptor declares, or by a
    valid chunk of another codec."""
    at = draw(st.integers(0, len(chunks) - 1))
    other = draw(st.sampled_from(COMPRESSIONS))
    piece = data[:draw(st.integers(0, len(data)))]
    forged = draw(st.one_of(
        st.binary(max_size=200),
        st.just(b"".join(wire.iter_chunks(piece, compression=other)) if piece else b"\x00"),
        st.builds(_flip, st.just(chunks[at][1]), st.integers(0, 1 << 20), st.integers(0, 7)),
        st.builds(lambda p, n: p[:n], st.just(chunks[at][1]), st.integers(0, 64)),
    ))
    return chunks[:at] + [(0, forged)] + chunks[at + 1:]


def _flip(payload: bytes, at: int, bit: int) -> bytes:
    if not payload:
        return b"\x01"
    b = bytearray(payload)
    b[at % len(b)] ^= 1 << bit
    return bytes(b)


_BOMBS: dict[str, bytes] = {}


def _bomb(kind: str) -> bytes:
    """A small payload that decodes to far more than any chunk may hold."""
    if kind not in _BOMBS:
        zeros = bytes(256 << 20)
        if kind == "zstd":  # the frame states its 256 MiB content size
            _BOMBS[kind] = zstandard.ZstdCompressor(level=1).compress(zeros)
        elif kind == "zstd-unsized":
            _BOMBS[kind] = zstandard.ZstdCompressor(level=1, write_content_size=False
                                                    ).compress(zeros)
        else:  # a blosc header declaring 1 GiB, and one declaring the most it can
            good = next(wire.iter_chunks(bytes(4096), compression=img.COMPRESSION_BLOSC))
            size = (1 << 30) if kind == "blosc" else 0xFFFFFFFF
            _BOMBS[kind] = good[:4] + struct.pack("<I", size) + good[8:]
    return _BOMBS[kind]


def _bombs(draw, chunks, data, compression):
    at = draw(st.integers(0, len(chunks) - 1))
    bomb = _bomb(draw(st.sampled_from(["zstd", "zstd-unsized", "blosc", "blosc-max"])))
    return chunks[:at] + [(0, bomb)] + chunks[at + 1:]


def _empty_chunks(draw, chunks, data, compression):
    """Empty chunks in between (harmless when uncompressed)."""
    at = draw(st.integers(0, len(chunks)))
    return chunks[:at] + [(0, b"")] + chunks[at:]


def _oversized(draw, chunks, data, compression):
    """A message over the 4 MiB limit."""
    return chunks + [(0, bytes(wire.MAX_MESSAGE_BYTES + 1))]


def _not_protobuf(draw, chunks, data, compression):
    """A request message that is not a valid ProcessRequest encoding."""
    raw = draw(st.one_of(st.binary(min_size=1, max_size=64),
                         st.just(b"\x12\xff\xff\xff\xff\x0f"), st.just(b"\x0a\x05\x08")))
    at = draw(st.integers(0, len(chunks)))
    return chunks[:at] + [("raw", raw)] + chunks[at:]


FAULTS = [_truncate, _too_long, _wrong_image, _second_header, _garbage, _bombs, _empty_chunks,
          _oversized, _not_protobuf]
HARMLESS = {_empty_chunks}


@given(streams())
def test_chunk_streams(fuzz, case):
    a, compression, messages, faults = case
    outcome = fuzz.check(messages, trace_memory=True)
    if set(faults) <= HARMLESS and (not faults or compression == img.COMPRESSION_NONE):
        # A correct stream, however it was cut into chunks: the image arrives intact.
        assert outcome.ok, outcome
        got = np.frombuffer(outcome.data, np.float32).reshape(a.shape)
        np.testing.assert_array_equal(got, a.astype(np.float32))


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=4))
def test_request_bytes_that_are_not_protobuf(fuzz, payloads):
    fuzz.check(payloads)
