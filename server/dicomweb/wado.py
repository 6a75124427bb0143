"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data and rendered images of a
subscriber's stored series.

Instances are sent as stored (their original transfer syntax), or as the store's JPEG 2000
version (lossless or lossy) when ``Accept`` names its transfer syntax; another transfer
syntax is refused (406). Frames are sent uncompressed
(``application/octet-stream``, little endian). Metadata comes from the files' headers
(index.py), large binary values (and the pixel data) as bulk data URIs. Rendered images
are PNG or JPEG, windowed by ``window=center,width[,linear]`` or else by the instance's
own window, or its value range.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medcompute.server.dicom.volume import quiet_pydicom
from medcompute.server.dicomweb import index
from medcompute.server.dicomweb.door import HttpError
from medcompute.server.dicomweb.index import Instance
from medcompute.server.dicomweb.qido import tag_of
from medcompute.server.worker.version_tasks import LOSSLESS_SYNTAX, LOSSY_SYNTAX

__all__ = ["accepts", "media_ranges", "syntax_asked", "instance_bytes", "frames", "rendered",
           "metadata", "bulk", "multipart", "part_head", "closing", "part_type", "window_of",
           "RENDERED_TYPES", "LOSSLESS_SYNTAX", "LOSSY_SYNTAX"]

#: The original transfer syntax, whatever it is.
ANY_SYNTAX = "*"
#: Explicit VR little endian: frames are sent so.
UNCOMPRESSED = "1.2.840.10008.1.2.1"
RENDERED_TYPES = ("image/jpeg", "image/png")
#: Values at least this long are sent as bulk data URIs in metadata.
BULK_THRESHOLD = index.BULK_THRESHOLD
_PIECE = 1 << 20


def media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for item in filter(None, (p.strip() for p in (accept or "*/*").split(","))):
        kind, *params = [p.strip() for p in item.split(";")]
        values = {}
        for p in params:
            name, _, value = p.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        out.append((kind.lower(), values))
    return out


def accepts(accept: str, offered: tuple[str, ...], *, syntax: str = "",
            multipart_only: bool = False) -> str:
    """The media type of ``offered`` that ``accept`` allows (its ranges in order), within a
    ``multipart/related; type=...`` range or (unless ``multipart_only``) bare; 406 naming
    what is offered. A ``transfer-syntax`` other than the stored ``syntax`` or ``*``
    is not offered."""
    for kind, params in media_ranges(accept):
        if kind == "multipart/related":
            inner = params.get("type", offered[0]).lower()
        elif multipart_only and kind != "*/*":
            continue
        else:
            inner = kind
        ts = params.get("transfer-syntax", "")
        if ts and ts != ANY_SYNTAX and ts != (syntax or ts):
            continue
        for media in offered:
            if inner in (media, "*/*", media.split("/")[0] + "/*"):
                return media
    shown = " or ".join(f'multipart/related; type="{m}"' if multipart_only else m
                        for m in offered)
    kept = (f" in its stored transfer syntax {syntax} (transfer-syntax={syntax} or *); "
            "other transfer syntaxes are not offered") if syntax else ""
    raise HttpError(406, f"this resource is offered as {shown}{kept}", "Accept")


def syntax_asked(accept: str, stored: str) -> str:
    """The transfer syntax the instances are asked in: "" for the stored one (also for
    ``*`` or none named), or one of the JPEG 2000 versions' (LOSSLESS_SYNTAX,
    LOSSY_SYNTAX); 406 otherwise. ``stored``: "" when the instances differ."""
    for kind, params in media_ranges(accept):
        if kind == "multipart/related":
            inner = params.get("type", "application/dicom").lower()
        elif kind == "*/*":
            inner = kind
        else:
            continue
        if inner not in ("application/dicom", "application/*", "*/*"):
            continue
        ts = params.get("transfer-syntax", "")
        if ts in ("", ANY_SYNTAX) or (stored and ts == stored):
            return ""
        if ts in (LOSSLESS_SYNTAX, LOSSY_SYNTAX):
            return ts
    offered = ", ".join(filter(None, (stored or "as stored", LOSSLESS_SYNTAX, LOSSY_SYNTAX)))
    raise HttpError(406, 'this resource is offered as multipart/related; '
                    f'type="application/dicom" with transfer-syntax {offered} or *', "Accept")


def part_type(media: str, inst: Instance) -> str:
    if media == "application/dicom":
        return f"application/dicom; transfer-syntax={_syntax(inst)}"
    return media


def _syntax(inst: Instance) -> str:
    meta = getattr(inst.header, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "") or UNCOMPRESSED)


def part_head(boundary: str, kind: str) -> bytes:
    """What precedes a part of a ``multipart/related`` body (RFC 2387); the part's
    bytes and CRLF follow."""
    return f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode()


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def multipart(parts: Iterator[tuple[str, bytes]], boundary: str) -> Iterator[bytes]:
    """The body of a ``multipart/related`` response of ``(content type, bytes)`` parts."""
    for kind, data in parts:
        yield part_head(boundary, kind)
        yield data
        yield b"\r\n"
    yield closing(boundary)


def instance_bytes(path: str, inst: Instance, sizes: tuple[int, ...] = ()) -> bytes:
    """The instance's file as stored (or, with the ``sizes`` of a version's files at
    ``path``, the version's file of it)."""
    sizes = sizes or inst.record.file_sizes
    with open(path, "rb") as f:
        f.seek(sum(sizes[:inst.index]))
        return f.read(sizes[inst.index])


def _dataset(path: str, inst: Instance) -> Dataset:
    with quiet_pydicom():
        return pydicom.dcmread(io.BytesIO(instance_bytes(path, inst)), force=True)


def _frame_numbers(text: str, count: int) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",")]
    except ValueError:
        raise HttpError(400, f"expected frame numbers separated by commas, got {text[:32]!r}",
                        "frames") from None
    for n in numbers:
        if not 1 <= n <= count:
            raise HttpError(404, f"the instance has frames 1 to {count}; there is no frame {n}",
                            "frames")
    return numbers


def _pixels(ds: Dataset) -> np.ndarray:
    """The instance's frames as one array (frames, rows, columns[, samples])."""
    with quiet_pydicom():
        array = ds.pixel_array
    # pydicom: (frames, rows, columns[, samples]) with several frames, else no frame axis
    return array if int(ds.get("NumberOfFrames", 1) or 1) > 1 else array[np.newaxis]


def frames(path: str, inst: Instance, text: str) -> list[bytes]:
    """The frames ``text`` names (1-based, comma-separated), uncompressed."""
    ds = _dataset(path, inst)
    if "PixelData" not in ds:
        raise HttpError(404, "this instance has no pixel data", "frames")
    array = _pixels(ds)
    return [np.ascontiguousarray(array[n - 1]).astype(array.dtype.newbyteorder("<"),
                                                        copy=False).tobytes()
            for n in _frame_numbers(text, len(array))]


def window_of(text: str) -> tuple[float, float, str] | None:
    """``center,width[,function]`` of a ``window`` parameter; 400 otherwise."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(-?[0-9.]+)\s*,\s*([0-9.]+)\s*(?:,\s*(linear|sigmoid|"
                     r"linear_exact))?\s*", text)
    if m is None or float(m.group(2)) <= 0:
        raise HttpError(400, "expected CENTER,WIDTH[,linear|linear_exact|sigmoid] with a "
                        f"width above 0, got {text[:48]!r}", "window")
    return float(m.group(1)), float(m.group(2)), m.group(3) or "linear"


def _first(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if len(value) else None
    return None if value is None else float(value)


def rendered(path: str, inst: Instance, media: str, window: tuple | None,
             frame: int = 1, quality: int = 90) -> bytes:
    """One frame as PNG or JPEG (8 bit), modality rescale then window applied."""
    ds = _dataset(path, inst)
    if "PixelData" not in ds:
        raise HttpError(404, "this instance has no pixel data", "rendered")
    array = _pixels(ds)
    image = array[_frame_numbers(str(frame), len(array))[0] - 1].astype(np.float32)
    if image.ndim == 2:
        image = image * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0)
        if window is None:
            center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
            if center is not None and width:
                window = (center, width, "linear")
        if window is None:
            low, high = float(image.min()), float(image.max())
        else:
            center, width, function = window
            if function == "sigmoid":
                image = 255.0 / (1 + np.exp(-4 * (image - center) / width))
                low, high = 0.0, 255.0
            elif function == "linear_exact":
                low, high = center - width / 2, center + width / 2
            else:
                low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
        image = (image - low) / max(high - low, 1e-6) * 255.0
    else:
        image = image[..., ::-1]               # RGB samples: OpenCV writes BGR
    eight = np.clip(image, 0, 255).astype(np.uint8)
    ok, data = (cv2.imencode(".png", eight) if media == "image/png" else
                cv2.imencode(".jpg", eight, [cv2.IMWRITE_JPEG_QUALITY, quality]))
    if not ok:
        raise HttpError(500, "the image could not be encoded")
    return data.tobytes()


def metadata(inst: Instance, bulk_uri: str) -> dict:
    """The instance's attributes as DICOM JSON; large binary values, and the pixel
    data, as bulk data URIs under ``bulk_uri`` (``.../bulk/{tag}``)."""
    if inst.json is not None:
        out = _rebased(inst.json, bulk_uri)
    else:
        out = inst.header.to_json_dict(
            bulk_data_threshold=BULK_THRESHOLD,
            bulk_data_element_handler=lambda element: f"{bulk_uri}/{element.tag:08X}")
    if "7FE00010" not in out:
        out["7FE00010"] = {"vr": "OW" if int(inst.header.get("BitsAllocated", 16)) > 8
                           else "OB", "BulkDataURI": f"{bulk_uri}/7FE00010"}
    return out


def _rebased(value, bulk_uri: str):
    """A copy of the catalog's DICOM JSON with its bulk data markers as URIs under
    ``bulk_uri`` (in sequence items too)."""
    if isinstance(value, dict):
        uri = value.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith(index.BULK_MARK):
            return {**value, "BulkDataURI": f"{bulk_uri}/{uri[len(index.BULK_MARK):]}"}
        return {k: _rebased(v, bulk_uri) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebased(v, bulk_uri) for v in value]
    return value


def bulk(path: str, inst: Instance, tag_text: str) -> bytes:
    """The value of one top-level attribute, as bytes (the pixel data: its frames,
    uncompressed, one after the other)."""
    tag = tag_of(tag_text, "bulk")
    ds = _dataset(path, inst)
    if tag == 0x7FE00010:
        if "PixelData" not in ds:
            raise HttpError(404, "this instance has no pixel data", "bulk")
        return np.ascontiguousarray(_pixels(ds)).tobytes()
    if tag not in ds:
        raise HttpError(404, f"this instance has no attribute {tag:08X}", "bulk")
    value = ds[tag].value
    return value if isinstance(value, bytes) else str(value).encode()
