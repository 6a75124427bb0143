"""JPEG 2000 codestreams for the stored versions: encode a frame, measure the error, cut a
codestream down to a lower resolution level.

Frames are encoded by OpenJPEG (pylibjpeg-openjpeg, the plugin pydicom 3 uses itself)
with one tile, one quality layer, precincts larger than any image, LRCP progression and
packet-length (PLT) markers. With one layer and one precinct per resolution, LRCP puts
the packets in resolution order (lowest first, each resolution's components together),
and PLT gives each packet's length: the bytes a decoder needs for resolution level
``k`` (``k`` of the highest resolutions dropped) are the headers and the packets of the
lowest resolutions, a prefix of the codestream. `prefix` cuts it, rewrites the
tile-part length and closes it with EOC; a standard decoder decodes it to the full
size with the dropped detail bands at zero (an upsampled lower resolution).

`reduced` makes of the same prefix the codestream of the image at that lower resolution
(each axis ``ceil(n / 2**level)`` long), without decoding: the image and tile sizes in
SIZ divided, ``level`` fewer decomposition levels in COD (and their precinct sizes
dropped), the quantization of the dropped sub-bands left out of QCD, the packet lengths
of the kept packets in PLT. The kept packets decode to the same low-pass coefficients,
so any decoder gives what a decoder asked to discard ``level`` resolutions (OpenJPEG's
``reduce``, which the installed binding does not expose) gives.

No I/O, no Dask: used by the worker tasks that make versions and by the store.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["Encoded", "Layout", "encode_frame", "decode_frame", "layout", "prefix",
           "reduced", "reduced_size", "error_of", "CodestreamError"]

_SOC, _SIZ, _COD, _SOT, _PLT, _SOD, _EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF90, 0xFF58, 0xFF93, 0xFFD9
_QCD = 0xFF5C
#: Main-header markers `reduced` carries over unchanged (comments, capabilities).
_KEPT = frozenset({0xFF64, 0xFF50})
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class CodestreamError(ValueError):
    """The codestream is not one this module wrote (or it is damaged)."""


@dataclass(frozen=True)
class Layout:
    """Where a codestream's parts are: enough to cut it at a resolution boundary."""

    resolutions: int              # DWT resolutions (decomposition levels + 1)
    components: int
    sot: int                      # offset of the (single) SOT marker
    data: int                     # offset of the first packet (after SOD)
    packets: tuple[int, ...]      # packet lengths, in codestream order

    def needed(self, level: int) -> int:
        """Bytes of the codestream needed for ``level`` (0: all), without the EOC."""
        keep = (self.resolutions - level) * self.components
        return self.data + sum(self.packets[:keep])


@dataclass(frozen=True)
class Encoded:
    codestream: bytes
    max_error: float              # largest absolute difference, decoded against the input
    psnr_db: float | None         # over the frame's value range; None when bit-exact


#: The smallest side a frame may have: OpenJPEG encodes six resolution levels (five
#: decompositions), each halving the image, and refuses a frame smaller than 2**5.
MIN_SIDE = 32
#: The bits allocated per sample a version carries.
BITS = (8, 16)


def refusal(rows: int, cols: int, bits_allocated: int | None = None,
            bits_stored: int | None = None) -> str | None:
    """Why frames of this size and depth cannot be encoded as the versions' JPEG 2000
    (None when they can), in words a caller can act on."""
    if rows < MIN_SIDE or cols < MIN_SIDE:
        return (f"the pixel data cannot be encoded as JPEG 2000: its frames are {rows} x "
                f"{cols} pixels (rows x columns), and versions need at least {MIN_SIDE} x "
                f"{MIN_SIDE} (six resolution levels); no compressed version of this image: "
                "ask for the original")
    if bits_allocated is not None and (bits_allocated not in BITS or
                                       (bits_stored or bits_allocated) > bits_allocated):
        return (f"the pixel data cannot be encoded as JPEG 2000: it has {bits_stored} bits "
                f"stored in {bits_allocated} allocated per sample, and versions carry 8 or "
                "16 bits allocated; no compressed version of this image: ask for the "
                "original")
    return None


def encode_frame(frame: np.ndarray, bits_stored: int, *, ratio: float | None,
                 rgb: bool = False) -> bytes:
    """One frame (rows, cols[, 3]) as a J2K codestream: lossless (``ratio`` None) or
    at ``ratio`` times fewer bytes than ``bits_stored`` bits per sample."""
    import openjpeg

    return openjpeg.encode(np.ascontiguousarray(frame), bits_stored=bits_stored,
                           photometric_interpretation=1 if rgb else 2, use_mct=False,
                           compression_ratios=[float(ratio)] if ratio else None, add_plt=True)


def decode_frame(codestream: bytes) -> np.ndarray:
    import openjpeg

    return openjpeg.decode(codestream)


def error_of(original: np.ndarray, decoded: np.ndarray) -> tuple[float, float | None]:
    """(max absolute error, PSNR in dB over the original's value range; None if exact)."""
    diff = decoded.astype(np.float64) - original.astype(np.float64)
    worst = float(np.max(np.abs(diff))) if diff.size else 0.0
    if worst == 0.0:
        return 0.0, None
    mse = float(np.mean(diff * diff))
    peak = float(np.max(original)) - float(np.min(original))
    peak = peak if peak > 0 else 1.0
    return worst, 10.0 * math.log10(peak * peak / mse)


def layout(codestream: bytes) -> Layout:
    """Parse the headers of a codestream `encode_frame` made (CodestreamError otherwise)."""
    cs = memoryview(codestream)
    if len(cs) < 4 or _U16.unpack_from(cs, 0)[0] != _SOC:
        raise CodestreamError("not a JPEG 2000 codestream (no SOC marker)")
    at, sot, resolutions, components, packets = 2, -1, 0, 0, []
    try:
        while True:
            (marker,) = _U16.unpack_from(cs, at)
            if marker == _SOD:
                at += 2
                break
            (length,) = _U16.unpack_from(cs, at + 2)
            body = cs[at + 4:at + 2 + length]
            if marker == _SIZ:
                (components,) = _U16.unpack_from(body, 34)
            elif marker == _COD:
                resolutions = body[5] + 1
            elif marker == _SOT:
                if sot >= 0:
                    raise CodestreamError("more than one tile-part")
                sot = at
            elif marker == _PLT:
                packets.extend(_packet_lengths(bytes(body[1:])))
            at += 2 + length
    except struct.error:
        raise CodestreamError("the codestream's headers are truncated") from None
    if sot < 0 or not resolutions or not components:
        raise CodestreamError("no SIZ, COD or SOT marker")
    if len(packets) != resolutions * components:
        raise CodestreamError(f"{len(packets)} packet lengths for {resolutions} resolutions "
                              f"of {components} components (more than one layer or precinct)")
    end = at + sum(packets)
    # An encapsulated DICOM frame is padded to an even length: at most one byte after EOC.
    if not 0 <= len(cs) - end - 2 <= 1 or _U16.unpack_from(cs, end)[0] != _EOC:
        raise CodestreamError("the packet lengths do not add up to the codestream")
    return Layout(resolutions, components, sot, at, tuple(packets))


def _packet_lengths(body: bytes) -> list[int]:
    lengths, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            lengths.append(value)
            value = 0
    return lengths


def prefix(codestream: bytes, level: int, where: Layout | None = None) -> bytes:
    """The codestream cut to resolution level ``level`` (0: unchanged): its headers and
    the packets of the lowest ``resolutions - level`` resolutions, the tile-part length
    rewritten, closed with EOC."""
    lay = where or layout(codestream)
    if not 0 <= level < lay.resolutions:
        raise ValueError(f"level {level} outside 0..{lay.resolutions - 1}")
    if level == 0:
        return bytes(codestream)
    out = bytearray(codestream[:lay.needed(level)])
    _U32.pack_into(out, lay.sot + 6, len(out) - lay.sot)   # Psot: this tile-part's length
    out += _U16.pack(_EOC)
    return bytes(out)


def reduced_size(n: int, level: int) -> int:
    """The length of an axis of ``n`` samples at resolution level ``level``."""
    return -(-n >> level)


def _segments(cs: bytes, lay: Layout) -> list[tuple[int, bytearray]]:
    """The main header's marker segments (marker, body after the length), SOC to SOT."""
    at, out = 2, []
    while at < lay.sot:
        marker, length = _U16.unpack_from(cs, at)[0], _U16.unpack_from(cs, at + 2)[0]
        out.append((marker, bytearray(cs[at + 4:at + 2 + length])))
        at += 2 + length
    return out


def _plt(lengths) -> bytes:
    body = bytearray([0])                                   # Zplt
    for value in lengths:
        groups = [value & 0x7F]
        while value := value >> 7:
            groups.append(value & 0x7F)
        body += bytes([g | 0x80 for g in reversed(groups[1:])] + [groups[0]])
    return bytes(body)


def reduced(codestream: bytes, level: int, where: Layout | None = None) -> bytes:
    """The codestream of the image at resolution level ``level`` (0: unchanged): each
    axis ``reduced_size(n, level)`` long, made of the packets `prefix` keeps."""
    lay = where or layout(codestream)
    if not 0 <= level < lay.resolutions:
        raise ValueError(f"level {level} outside 0..{lay.resolutions - 1}")
    if level == 0:
        return bytes(codestream)
    levels = lay.resolutions - 1                            # decomposition levels
    out = bytearray(_U16.pack(_SOC))
    for marker, body in _segments(codestream, lay):
        if marker == _SIZ:
            for at in (2, 6, 18, 22):                       # Xsiz, Ysiz, XTsiz, YTsiz
                _U32.pack_into(body, at, reduced_size(_U32.unpack_from(body, at)[0], level))
            if any(_U32.unpack_from(body, at)[0] for at in (10, 14, 26, 30)):
                raise CodestreamError("an image or tile offset in SIZ")
        elif marker == _COD:
            body[5] = levels - level
            if body[0] & 1:                                 # precinct sizes, one a resolution
                del body[11 + levels - level:11 + levels]
        elif marker == _QCD:
            style, bands = body[0] & 0x1F, 3 * (levels - level) + 1
            if style == 0:                                  # no quantization: 1 byte a band
                del body[1 + bands:]
            elif style == 2:                                # scalar expounded: 2 bytes a band
                del body[1 + 2 * bands:]
        elif marker not in _KEPT:
            raise CodestreamError(f"marker {marker:#06x} in the main header")
        out += _U16.pack(marker) + _U16.pack(len(body) + 2) + body
    keep = (lay.resolutions - level) * lay.components
    plt = _plt(lay.packets[:keep])
    packets = codestream[lay.data:lay.data + sum(lay.packets[:keep])]
    tile = bytearray(_U16.pack(_SOT) + _U16.pack(10) + _U16.pack(0) + _U32.pack(0)
                     + bytes([0, 1]))                       # Isot 0, Psot, TPsot 0, TNsot 1
    tile += _U16.pack(_PLT) + _U16.pack(len(plt) + 2) + plt + _U16.pack(_SOD) + packets
    _U32.pack_into(tile, 6, len(tile))
    return bytes(out + tile + _U16.pack(_EOC))
