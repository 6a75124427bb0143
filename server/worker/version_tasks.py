"""What a Dask worker runs to make a stored image's compressed versions, and the cut of a
version's DICOM files to a lower resolution level.

A version is the image's DICOM files again, each frame's pixel data a JPEG 2000
codestream (``j2k``): lossless (JPEG 2000 Lossless Only, bit-exact against the stored
values, checked here) or lossy at a configured ratio (JPEG 2000, labelled in DICOM:
Lossy Image Compression "01", its ratio and method ISO_15444_1, a new SOP Instance UID
derived from the original's and the version's name). Every frame is decoded again to
record the version's error (maximum absolute error and PSNR over the frame's range).

Like ``store_tasks``: the worker reads the original blob and writes a synced temporary
blob file itself and returns small facts; the server installs it.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence

import numpy as np

from medcompute.server.dicom import j2k
from medcompute.server.errors import FailedPrecondition
from medcompute.server.storage.blobs import BlobWriter
from medcompute.server.worker.store_tasks import dicom_parts

__all__ = ["make_version", "make_raw_version", "at_level", "raw_dataset", "RAW_DTYPES",
           "LOSSLESS_SYNTAX", "LOSSY_SYNTAX"]

LOSSLESS_SYNTAX = "1.2.840.10008.1.2.4.90"    # JPEG 2000 Image Compression (Lossless Only)
LOSSY_SYNTAX = "1.2.840.10008.1.2.4.91"       # JPEG 2000 Image Compression
METHOD = "ISO_15444_1"


def _frames(ds) -> tuple[np.ndarray, bool]:
    """The stored values as (frames, rows, cols[, 3]) and whether they are colour."""
    spp = int(ds.get("SamplesPerPixel", 1))
    if spp not in (1, 3):
        raise FailedPrecondition(f"versions are made of 1 or 3 samples per pixel; this image "
                                 f"has {spp}", "version")
    array = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    shape = (frames, rows, cols) + ((3,) if spp == 3 else ())
    return array.reshape(shape), spp == 3


def _lossy_label(ds, ratio: float, *, source_uid: str, name: str, note: str) -> None:
    from pydicom.uid import generate_uid

    before = ds.get("LossyImageCompressionRatio")
    ratios = [] if before is None else [float(v) for v in
                                        (before if isinstance(before, Sequence) else [before])]
    methods = ds.get("LossyImageCompressionMethod")
    methods = [] if methods is None else list(methods if isinstance(methods, Sequence)
                                              and not isinstance(methods, str) else [methods])
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*ratios, round(ratio, 2)]
    ds.LossyImageCompressionMethod = [*methods, METHOD]
    uid = generate_uid(entropy_srcs=[source_uid, name])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    text = f"{ds.get('DerivationDescription', '')} {note}".strip()
    ds.DerivationDescription = text[:1024]


def _write(ds) -> bytes:
    import pydicom

    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _encode(frame: np.ndarray, bits: int, ratio: float | None, rgb: bool,
            frame_bytes: int) -> bytes:
    """A frame's codestream; lossy: at most ``frame_bytes / ratio`` bytes (OpenJPEG's rate
    control counts ``bits`` per sample and leaves out the headers, so the ratio asked of
    it is raised until the codestream meets the configured one)."""
    asked = ratio
    for _ in range(8):
        try:
            cs = j2k.encode_frame(frame, bits, ratio=asked, rgb=rgb)
        except (ValueError, RuntimeError) as exc:
            raise FailedPrecondition(f"the pixel data cannot be encoded as JPEG 2000 ({exc}); "
                                     "no compressed version of this image", "version") from None
        if ratio is None or len(cs) * ratio <= frame_bytes:
            return cs
        asked = asked * len(cs) * ratio / frame_bytes * 1.02
    raise FailedPrecondition(f"JPEG 2000 does not reach a compression ratio of {ratio} on "
                             f"frames of {frame_bytes} bytes (the codestream's headers alone "
                             "are too large); configure a lower ratio", "version")


def _version_file(part, ratio: float | None, name: str) -> tuple[bytes, dict]:
    import pydicom
    from pydicom.encaps import encapsulate

    from medcompute.server.dicom.volume import quiet_pydicom

    with quiet_pydicom():
        ds = pydicom.dcmread(io.BytesIO(bytes(part)))
        frames, rgb = _frames(ds)
    bits = int(ds.BitsStored)
    streams, worst, psnrs = [], 0.0, []
    frame_bytes = frames[0].size * int(ds.BitsAllocated) // 8
    for frame in frames:
        cs = _encode(frame, bits, ratio, rgb, frame_bytes)
        error, psnr = j2k.error_of(frame, j2k.decode_frame(cs).reshape(frame.shape))
        worst = max(worst, error)
        if psnr is not None:
            psnrs.append(psnr)
        streams.append(cs)
    if ratio is None and worst != 0.0:
        raise FailedPrecondition(f"the lossless encoding differs by up to {worst} from the "
                                 "stored values; no lossless version of this image", "version")
    raw_bytes = frames.shape[0] * int(ds.Rows) * int(ds.Columns) * (3 if rgb else 1) \
        * int(ds.BitsAllocated) // 8
    coded = sum(len(s) for s in streams)
    source_uid = str(ds.get("SOPInstanceUID", ""))
    ds = copy.copy(ds)
    ds.file_meta = copy.copy(ds.file_meta)
    ds.file_meta.TransferSyntaxUID = LOSSY_SYNTAX if ratio else LOSSLESS_SYNTAX
    ds.PixelData = encapsulate(streams)
    ds["PixelData"].VR = "OB"
    if rgb:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    if ratio:
        _lossy_label(ds, raw_bytes / coded, source_uid=source_uid, name=name,
                     note=f"JPEG 2000 lossy compression ratio {raw_bytes / coded:.1f} "
                          f"(version '{name}')")
    levels = min(j2k.layout(s).resolutions for s in streams)
    facts = {"raw_bytes": raw_bytes, "coded_bytes": coded, "max_error": worst,
             "psnr_db": min(psnrs) if psnrs else None, "resolutions": levels}
    return _write(ds), facts


def make_version(dicom_path: str, file_sizes, tmp: str, *, name: str,
                 ratio: float | None) -> dict:
    """Encode every file of a DICOM blob; write the version's files as one blob at ``tmp``.

    Returns its digest, size, CRC-32, file sizes and the measured facts: the ratio of
    uncompressed to coded pixel bytes, the maximum absolute error and the lowest PSNR
    of any frame (None when bit-exact), the resolution levels every frame has.
    """
    return _made([_version_file(part, ratio, name)
                  for part in dicom_parts(dicom_path, file_sizes)], tmp)


def _made(made: list[tuple[bytes, dict]], tmp: str) -> dict:
    files, raw, coded, worst, psnr, levels = [], 0, 0, 0.0, None, 64
    for data, facts in made:
        files.append(data)
        raw += facts["raw_bytes"]
        coded += facts["coded_bytes"]
        worst = max(worst, facts["max_error"])
        if facts["psnr_db"] is not None:
            psnr = facts["psnr_db"] if psnr is None else min(psnr, facts["psnr_db"])
        levels = min(levels, facts["resolutions"])
    with BlobWriter(tmp, crc=True) as w:
        for data in files:
            w.write(data)
        digest, size = w.finish()
    return {"digest": digest, "size": size, "crc32": w.crc32,
            "file_sizes": [len(f) for f in files], "ratio": raw / coded, "max_error": worst,
            "psnr_db": psnr, "resolutions": levels, "pixel_bytes": coded}


#: The dtypes of raw arrays that get versions: integers of 8 and 16 bits. 32-bit integers
#: and floats have none (JPEG 2000 in DICOM, as OpenJPEG encodes it, carries at most 16
#: bits allocated per sample here and no floating point).
RAW_DTYPES = ("|u1", "|i1", "<u2", "<i2")
_SC_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"     # Multi-frame Grayscale Byte SC Image Storage
_SC_WORD = "1.2.840.10008.5.1.4.1.1.7.3"     # Multi-frame Grayscale Word SC Image Storage


def raw_dataset(array: np.ndarray, *, uid_source: str):
    """A raw array (rows, cols) or (frames, rows, cols) as one uncompressed multi-frame
    secondary-capture DICOM dataset, frame k being ``array[k]``: what a raw image's
    versions are made of. Carries no patient data (the patient and study attributes the
    IOD requires are empty: unknown); the UIDs derive from ``uid_source``.

    uint8 is a Multi-frame Grayscale Byte SC image, the other dtypes a Word SC image (int8
    in 9 of its 16 bits), whose stored values are unsigned as the IOD requires: int8 and
    int16 are stored shifted by 128 and 32768, with the Rescale Intercept (-128, -32768)
    that gives the values back (``pydicom.pixels.apply_rescale``)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.tag import Tag
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dtype = np.dtype(array.dtype)
    if dtype.str not in RAW_DTYPES:
        raise FailedPrecondition(f"versions of a raw array are made of 8- or 16-bit integers "
                                 f"(uint8, int8, uint16, int16); this image's dtype is "
                                 f"{dtype.name}", "version")
    if array.ndim not in (2, 3):
        raise FailedPrecondition(f"versions of a raw array are made of 2-D images or 3-D "
                                 f"volumes (frames, rows, cols); this image has {array.ndim} "
                                 "axes", "version")
    frames = array.reshape((-1,) + array.shape[-2:])
    byte = dtype == np.uint8
    bits = 8 if byte else 16
    shift = -int(np.iinfo(dtype).min)  # 128 or 32768 for a signed dtype, else 0
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = _SC_BYTE if byte else _SC_WORD
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[uid_source, "instance"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_source, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_source, "series"])
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword in _RAW_UNKNOWN:  # type 2 (and 2C) attributes: present, empty
        setattr(ds, keyword, None)
    ds.Modality = "OT"
    ds.SeriesNumber = ds.InstanceNumber = 1  # the one instance of its own series
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.NumberOfFrames = frames.shape[0]
    ds.FrameLabelVector = [str(k + 1) for k in range(frames.shape[0])]
    ds.FrameIncrementPointer = Tag("FrameLabelVector")
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    depth = 9 if dtype == np.int8 else bits  # Word SC stores 9 to 16 bits
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, depth, depth - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -shift, 1, "US"
    ds.PresentationLUTShape = "IDENTITY"
    stored = frames.astype(np.int32) + shift if shift else frames
    ds.PixelData = np.ascontiguousarray(stored, dtype=f"<u{bits // 8}").tobytes()
    ds["PixelData"].VR = "OB" if byte else "OW"
    return ds


#: What a raw array's objects do not know: the patient, the study, the body part and the
#: patient's orientation (empty, as the IOD allows for type 2 and 2C attributes).
_RAW_UNKNOWN = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                "Laterality", "PatientOrientation")


def make_raw_version(voxels_path: str, tmp: str, *, name: str, ratio: float | None,
                     uid_source: str) -> dict:
    """`make_version` for an image registered as a raw array: its voxels as one
    multi-frame DICOM file (`raw_dataset`), every frame (slice) a JPEG 2000 codestream."""
    from medcompute.server.storage.blobs import read_voxels

    data = _write(raw_dataset(read_voxels(voxels_path), uid_source=uid_source))
    return _made([_version_file(data, ratio, name)], tmp)


def at_level(files: Sequence[bytes], level: int, *, name: str) -> list[bytes]:
    """A version's files at resolution level ``level``: every frame the codestream of the
    image reduced by ``2**level`` per axis (``j2k.reduced``: only the packets that level
    needs), Rows, Columns and the pixel spacings changed to match, labelled lossy (a
    reduced lossless version is lossy too)."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    from medcompute.server.dicom.volume import quiet_pydicom

    out = []
    for data in files:
        with quiet_pydicom():
            ds = pydicom.dcmread(io.BytesIO(data))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        streams = [j2k.reduced(f, level) for f in
                   generate_frames(ds.PixelData, number_of_frames=frames)]
        ds.Rows = j2k.reduced_size(int(ds.Rows), level)
        ds.Columns = j2k.reduced_size(int(ds.Columns), level)
        for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
            if ds.get(keyword):
                setattr(ds, keyword, [round(float(v) * 2 ** level, 6) for v in ds[keyword].value])
        raw = frames * int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) \
            * int(ds.BitsAllocated) // 8
        coded = sum(len(s) for s in streams)
        ds.file_meta.TransferSyntaxUID = LOSSY_SYNTAX
        ds.PixelData = encapsulate(streams)
        ds["PixelData"].VR = "OB"
        _lossy_label(ds, raw / coded, source_uid=str(ds.get("SOPInstanceUID", "")),
                     name=f"{name}@{level}",
                     note=f"JPEG 2000 resolution level {level} of version '{name}'")
        out.append(_write(ds))
    return out
