"""Helpers shared by the image store's tests: descriptors, chunk streams, DICOM variants.

Every DICOM file is one of pydicom's bundled test files, or made from one.
"""

from __future__ import annotations

import asyncio
import copy
import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from medcompute.proto import wire
from medcompute.proto.v1 import image_pb2

CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")


async def in_threads(fn, *args, **kwargs):
    """The store's runner without a cluster: worker functions in a thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def with_store(path, body, workers=None, **config):
    """Run ``await body(store)`` against a fresh ImageStore in ``path`` (its catalog the
    data directory's SQLite file, or ``catalog=URL``'s PostgreSQL; ``workers``: the CPU
    workers it counts, for decoding in shares)."""
    from medcompute.server.config import ServerConfig
    from medcompute.server.storage.db import Database
    from medcompute.server.store.images import ImageStore

    async def main():
        settings = ServerConfig(address="127.0.0.1:0", data_dir=Path(path), **config)
        db = Database(settings.catalog) if settings.catalog else None
        async def count():
            return workers

        store = ImageStore(settings, in_threads, db=db,
                           workers=None if workers is None else count)
        try:
            await store.open()
            return await body(store)
        finally:
            store.close()
            if db is not None:
                db.close()
    return asyncio.run(main())


def data_of(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not bundled with pydicom"
    with open(path, "rb") as f:
        return f.read()


def encode(ds: Dataset, **kwargs) -> bytes:
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, **kwargs)
    return out.getvalue()


def raw_descriptor(array: np.ndarray, compression=image_pb2.COMPRESSION_NONE, spacing=None):
    desc = image_pb2.ImageDescriptor(
        encoding=image_pb2.ENCODING_RAW, shape=array.shape, dtype=wire.dtype_to_proto(array.dtype),
        size=array.nbytes, crc32=wire.crc32(np.ascontiguousarray(array)),
        compression=compression)
    if spacing is not None:
        desc.spacing_mm.extend(spacing)
    return desc


def dicom_descriptor(parts: list[bytes], compression=image_pb2.COMPRESSION_NONE):
    crc = 0
    for p in parts:
        crc = wire.crc32(p, crc)
    return image_pb2.ImageDescriptor(encoding=image_pb2.ENCODING_DICOM,
                                     file_sizes=[len(p) for p in parts],
                                     size=sum(len(p) for p in parts), crc32=crc,
                                     compression=compression)


def payloads(data, compression=image_pb2.COMPRESSION_NONE, itemsize=1, chunk_size=None):
    return list(wire.iter_chunks(data, compression=compression, itemsize=itemsize,
                                 chunk_size=chunk_size or wire.CHUNK_SIZE))


async def stream(pieces, image=0):
    """(index, Chunk) pairs as a servicer hands them to the store (``image`` as in
    wire.image_chunk: 0 the input, k operands[k - 1])."""
    for i, data in enumerate(pieces, 1):
        yield i, wire.image_chunk(image, data)
        await asyncio.sleep(0)


async def register(store, desc, chunks, **kwargs):
    """``store.register`` as the Store servicer calls it: the descriptor checked and the
    (index, Chunk) pairs taken apart at the API edge (api/store.py's ``registration``)."""
    from medcompute.server.api.store import registration

    expected, pieces = registration(desc, chunks, max_bytes=store.config.max_image_bytes)
    return await store.register(expected, pieces, **kwargs)


def coder(compression=image_pb2.COMPRESSION_NONE):
    """The Coder of a Get stream in ``compression`` (a Compression enum value), as the
    Store servicer gives it to the store."""
    from medcompute.server.api.store import stream_coder

    return stream_coder(compression)


def ct_series(n=5, *, step=2.5, series_uid=None, patient="P-SERIES"):
    """``n`` copies of CT_small along the slice normal; slice k holds stored + 10 * k."""
    base = pydicom.dcmread(CT)
    normal = np.cross([float(v) for v in base.ImageOrientationPatient[:3]],
                      [float(v) for v in base.ImageOrientationPatient[3:]])
    origin = np.array([float(v) for v in base.ImagePositionPatient])
    uid = series_uid or generate_uid()
    parts = []
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), uid
        ds.PatientID = patient
        ds.InstanceNumber = k + 1
        ds.XRayTubeCurrent = 100 + 20 * k   # dose modulation: averaged in the catalog
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + step * k * normal]
        ds.PixelData = (base.pixel_array + np.int16(10 * k)).astype(np.int16).tobytes()
        parts.append(encode(ds))
    return parts


def mr_with_conditions() -> bytes:
    ds = pydicom.dcmread(MR)
    ds.MagneticFieldStrength = 1.5
    ds.InversionTime = 300
    ds.SOPInstanceUID = generate_uid()
    return encode(ds)


# -- damaged files -------------------------------------------------------------------------

def _ct() -> Dataset:
    return pydicom.dcmread(CT)


def truncated() -> bytes:
    return data_of("CT_small.dcm")[:-700]


def bad_vr() -> bytes:
    return data_of("badVR.dcm")


def no_pixel_data() -> bytes:
    return data_of("rtstruct.dcm")


def with_uids(data: bytes) -> bytes:
    """The file, given the Study and Series Instance UIDs it lacks (the store keeps only
    instances that have them; a few of pydicom's test files have none)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not ds.get(keyword):
            setattr(ds, keyword, generate_uid())
    return encode(ds)


def changed_ct(**changes) -> bytes:
    """CT_small with ``changes`` (None: the attribute removed), as a sender could make it."""
    from medcompute.server.dicom.volume import quiet_pydicom

    ds = _ct()
    with quiet_pydicom():       # values pydicom would warn of are the point here
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        return encode(ds)


def short_pixel_data() -> bytes:
    ds = _ct()
    ds.PixelData = ds.PixelData[:-100]
    return encode(ds)


def absurd_dimensions() -> bytes:
    ds = _ct()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 1_000_000
    return encode(ds)


def deflate_bomb(megabytes: int = 96) -> bytes:
    ds = _ct()
    ds.Rows, ds.Columns = 4096, 4096
    ds.NumberOfFrames = megabytes * (1 << 20) // (4096 * 4096 * 2)
    ds.PixelData = bytes(4096 * 4096 * 2 * int(ds.NumberOfFrames))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return encode(ds, enforce_file_format=True)


def mixed_series() -> list[bytes]:
    return ct_series(2) + ct_series(2)


# -- JPEG Lossless ---------------------------------------------------------------------------
# pydicom bundles no grayscale JPEG Lossless (process 14) image and has no encoder for it;
# this writes one: predictor 1, one Huffman table giving every category a 5-bit code.

def _jpeg_lossless(image: np.ndarray, precision: int) -> bytes:
    x = image.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]            # first row: the sample to the left
    pred[1:, 0] = x[:-1, 0]            # first column: the sample above
    pred[1:, 1:] = x[1:, :-1]          # predictor 1: the sample to the left
    modulus = 1 << 16
    diff = (x - pred) % modulus
    diff = np.where(diff > modulus // 2, diff - modulus, diff)
    out = bytearray()
    acc = nbits = 0

    def put(value: int, n: int) -> None:
        nonlocal acc, nbits
        acc = (acc << n) | (value & ((1 << n) - 1))
        nbits += n
        while nbits >= 8:
            nbits -= 8
            byte = (acc >> nbits) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0)
    for d in diff.reshape(-1).tolist():
        ssss = 0 if d == 0 else min(16, abs(d).bit_length())
        put(ssss, 5)                   # the code of category ssss is ssss itself, 5 bits
        if 0 < ssss < 16:
            put(d if d > 0 else d + (1 << ssss) - 1, ssss)
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)
    rows, cols = image.shape
    bits = bytes(4) + bytes([17]) + bytes(11)
    return b"".join([
        b"\xff\xd8",
        b"\xff\xc3" + (11).to_bytes(2, "big") + bytes([precision]) + rows.to_bytes(2, "big")
        + cols.to_bytes(2, "big") + b"\x01\x01\x11\x00",
        b"\xff\xc4" + (2 + 1 + 16 + 17).to_bytes(2, "big") + b"\x00" + bits + bytes(range(17)),
        b"\xff\xda" + (8).to_bytes(2, "big") + b"\x01\x01\x00\x01\x00\x00",
        bytes(out), b"\xff\xd9"])


def jpeg_lossless_ct() -> bytes:
    """CT_small with its pixels as JPEG Lossless, Non-Hierarchical, First-Order Prediction."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    ds = pydicom.dcmread(CT)
    stored = ds.pixel_array.astype(np.int16).view(np.uint16)
    ds.PixelData = encapsulate([_jpeg_lossless(stored, 16)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.SOPInstanceUID = generate_uid()
    return encode(ds)


def synthetic_volume(dtype: str, shape=(3, 96, 80), seed: int = 11) -> np.ndarray:
    """Smooth anatomy-like ramps and blobs plus seeded noise, over most of the dtype's
    range (negative values too for int16)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    info = np.iinfo(dtype)
    field = 0.5 + 0.35 * np.sin(x / 11.0 + z) * np.cos(y / 15.0)
    field += rng.normal(0, 0.01, field.shape)
    values = info.min + field * (float(info.max) - info.min)
    return np.clip(values, info.min, info.max).astype(dtype)
