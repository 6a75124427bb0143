"""Film sheets from a stored image, and the print SCU that sends them to a DICOM printer.

Pure parts first: :func:`check_options` (the one validator of a print request),
:func:`pages` (the slices, or their maximum-intensity projection, in film boxes of the
display format's image boxes) and :func:`to_print` (a slice as the printer's 8- or
12-bit grayscale: a linear map of the slice's own minimum..maximum onto 0..2**bits-1,
rounded half to even, as NumPy rounds; a flat slice is all 0). Then :func:`send`, the
Basic Grayscale Print Management SCU (pynetdicom): the printer's status (N-GET), a film
session (N-CREATE), per sheet a film box (N-CREATE) whose image boxes are set (N-SET)
and printed (N-ACTION), and the session deleted (N-DELETE).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from medcompute.server.dicomnet.association import keep_responses, reachable
from medcompute.server.dicomnet.sockets import SOCKET_HANDLERS
from medcompute.server.errors import InvalidArgument

__all__ = ["FILM_SIZES", "ORIENTATIONS", "PrintOptions", "Sent", "check_options", "pages",
           "send", "to_print"]

#: The film sizes DICOM defines (PS3.3 C.13.8, Film Size ID).
FILM_SIZES = ("8INX10IN", "8_5INX11IN", "10INX12IN", "10INX14IN", "11INX14IN", "11INX17IN",
              "14INX14IN", "14INX17IN", "24CMX24CM", "24CMX30CM", "A4", "A3")
ORIENTATIONS = ("PORTRAIT", "LANDSCAPE")
MAX_COPIES = 99
MAX_SHEETS = 100
_FORMAT = re.compile(r"^STANDARD\\([1-9][0-9]?),([1-9][0-9]?)$")


@dataclass(frozen=True)
class PrintOptions:
    display_format: str = "STANDARD\\1,1"
    film_size: str = "8INX10IN"
    orientation: str = "PORTRAIT"
    copies: int = 1
    #: Indices along the first axis of a 3-D image; empty: every slice (of a 2-D image,
    #: the image itself).
    slices: tuple[int, ...] = ()
    #: One maximum-intensity projection along the first axis instead of slices.
    mip: bool = False
    bits: int = 8
    medium_type: str = ""

    @property
    def boxes(self) -> int:
        """Image boxes on one sheet: columns times rows of the display format."""
        c, r = _FORMAT.match(self.display_format).groups()
        return int(c) * int(r)


def check_options(o: PrintOptions, shape: tuple[int, ...]) -> PrintOptions:
    """``o`` with its names in upper case, or InvalidArgument naming the field."""
    fmt = o.display_format.strip().upper()
    if not _FORMAT.match(fmt):
        raise InvalidArgument(f"expected STANDARD\\C,R (columns, rows from 1 to 99), got "
                              f"{o.display_format!r}", "display_format")
    size = o.film_size.strip().upper()
    if size not in FILM_SIZES:
        raise InvalidArgument(f"expected one of {', '.join(FILM_SIZES)}, got {o.film_size!r}",
                              "film_size")
    orientation = o.orientation.strip().upper()
    if orientation not in ORIENTATIONS:
        raise InvalidArgument(f"expected portrait or landscape, got {o.orientation!r}",
                              "orientation")
    if not 1 <= o.copies <= MAX_COPIES:
        raise InvalidArgument(f"expected 1 to {MAX_COPIES}, got {o.copies}", "copies")
    if o.bits not in (8, 12):
        raise InvalidArgument(f"expected 8 or 12, got {o.bits}", "bits")
    if len(shape) not in (2, 3):
        raise InvalidArgument(f"a printed image has 2 or 3 axes; this one has {len(shape)}",
                              "image_id")
    if o.mip and o.slices:
        raise InvalidArgument("give slices or mip, not both", "mip")
    if o.mip and len(shape) != 3:
        raise InvalidArgument("a MIP needs a 3-D image", "mip")
    if o.slices and len(shape) != 3:
        raise InvalidArgument("slices are of a 3-D image; this one is 2-D", "slices")
    for i, s in enumerate(o.slices):
        if not 0 <= s < shape[0]:
            raise InvalidArgument(f"slice {s} does not exist; the image has {shape[0]} "
                                  f"(0 to {shape[0] - 1})", f"slices[{i}]")
    checked = PrintOptions(fmt, size, orientation, o.copies, tuple(o.slices), o.mip, o.bits,
                           o.medium_type.strip().upper())
    count = 1 if (o.mip or len(shape) == 2) else len(o.slices) or shape[0]
    sheets = math.ceil(count / checked.boxes)
    if sheets * o.copies > MAX_SHEETS:
        raise InvalidArgument(f"{sheets} sheet(s) x {o.copies} copies is more than "
                              f"{MAX_SHEETS} sheets", "slices")
    return checked


def to_print(image: np.ndarray, bits: int) -> np.ndarray:
    """A 2-D slice as the printer's grayscale: uint8 for 8 bits, uint16 (0..4095) for 12."""
    x = np.asarray(image, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    top = (1 << bits) - 1
    if hi <= lo:
        out = np.zeros(x.shape)
    else:
        out = np.rint((x - lo) * (top / (hi - lo)))
    return out.astype(np.uint8 if bits == 8 else np.uint16)


def pages(volume: np.ndarray, o: PrintOptions) -> list[list[np.ndarray]]:
    """The printed slices (``to_print``), in sheets of ``o.boxes`` image boxes."""
    if volume.ndim == 2:
        slices = [volume]
    elif o.mip:
        slices = [volume.max(axis=0)]
    else:
        slices = [volume[s] for s in (o.slices or range(volume.shape[0]))]
    printed = [to_print(s, o.bits) for s in slices]
    return [printed[i:i + o.boxes] for i in range(0, len(printed), o.boxes)]


@dataclass
class Sent:
    """What the printer said: its status, and the job's (DONE, or FAILED with why)."""

    printer_status: str = ""
    printer_status_info: str = ""
    status: str = "FAILED"
    reason: str = ""
    sheets: int = 0
    film_session_uid: str = ""
    film_box_uids: list[str] = field(default_factory=list)


def _grayscale(pixels: np.ndarray, bits: int):
    from pydicom.dataset import Dataset

    g = Dataset()
    g.SamplesPerPixel = 1
    g.PhotometricInterpretation = "MONOCHROME2"
    g.Rows, g.Columns = (int(n) for n in pixels.shape)
    # Pixel Aspect Ratio (1C) is left out: the boxes' pixels are square (PS3.3 C.13.5).
    g.BitsAllocated = 8 if bits == 8 else 16
    g.BitsStored = bits
    g.HighBit = bits - 1
    g.PixelRepresentation = 0
    g.PixelData = np.ascontiguousarray(pixels).astype(
        "<u2" if bits == 12 else "u1").tobytes()
    return g


def send(sheets: list[list[np.ndarray]], o: PrintOptions, *, host: str, port: int,
         called_ae: str, own_ae: str, timeout: float = 30.0) -> Sent:
    """Print ``sheets`` (each a list of image boxes' pixels) on the printer; blocking."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pynetdicom import AE
    from pynetdicom.sop_class import (
        BasicFilmBox,
        BasicFilmSession,
        BasicGrayscalePrintManagementMeta,
        Printer,
        PrinterInstance,
    )

    meta = BasicGrayscalePrintManagementMeta
    sent = Sent()
    unreachable = reachable(host, port, timeout)
    if unreachable:
        sent.reason = f"the printer at {host}:{port} is unreachable ({unreachable})"
        return sent
    ae = AE(ae_title=own_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(meta)
    assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=SOCKET_HANDLERS)
    keep_responses(assoc)
    if not assoc.is_established:
        sent.reason = f"the printer {called_ae} at {host}:{port} did not accept an association"
        return sent

    def check(status, what: str) -> bool:
        code = getattr(status, "Status", None)
        if code is None or code != 0 and not 0xB000 <= code <= 0xBFFF:
            shown = "no reply" if code is None else f"status 0x{code:04X}"
            sent.reason = f"{what}: {shown}"
            return False
        return True

    try:
        status, attrs = assoc.send_n_get([0x21100010, 0x21100020], Printer, PrinterInstance,
                                         meta_uid=meta)
        if check(status, "printer status (N-GET)") and attrs is not None:
            sent.printer_status = str(attrs.get("PrinterStatus", ""))
            sent.printer_status_info = str(attrs.get("PrinterStatusInfo", ""))
        session = Dataset()
        session.NumberOfCopies = str(o.copies)
        if o.medium_type:
            session.MediumType = o.medium_type
        sent.film_session_uid = generate_uid()
        status, _ = assoc.send_n_create(session, BasicFilmSession, sent.film_session_uid,
                                        meta_uid=meta)
        if not check(status, "film session (N-CREATE)"):
            return sent
        for sheet in sheets:
            box = Dataset()
            box.ImageDisplayFormat = o.display_format
            box.FilmOrientation = o.orientation
            box.FilmSizeID = o.film_size
            ref = Dataset()
            ref.ReferencedSOPClassUID = BasicFilmSession
            ref.ReferencedSOPInstanceUID = sent.film_session_uid
            box.ReferencedFilmSessionSequence = [ref]
            box_uid = generate_uid()
            status, made = assoc.send_n_create(box, BasicFilmBox, box_uid, meta_uid=meta)
            if not check(status, "film box (N-CREATE)") or made is None:
                sent.reason = sent.reason or "film box (N-CREATE): no image boxes returned"
                return sent
            sent.film_box_uids.append(box_uid)
            refs = list(made.get("ReferencedImageBoxSequence", []))
            if len(refs) < len(sheet):
                sent.reason = (f"the printer made {len(refs)} image boxes for the display "
                               f"format; {len(sheet)} are needed")
                return sent
            for position, (pixels, item) in enumerate(zip(sheet, refs), start=1):
                image_box = Dataset()
                image_box.ImageBoxPosition = position
                image_box.BasicGrayscaleImageSequence = [_grayscale(pixels, o.bits)]
                status, _ = assoc.send_n_set(image_box, item.ReferencedSOPClassUID,
                                             item.ReferencedSOPInstanceUID, meta_uid=meta)
                if not check(status, f"image box {position} (N-SET)"):
                    return sent
            status, _ = assoc.send_n_action(None, 1, BasicFilmBox, box_uid, meta_uid=meta)
            if not check(status, "print (N-ACTION)"):
                return sent
            sent.sheets += o.copies
        status = assoc.send_n_delete(BasicFilmSession, sent.film_session_uid, meta_uid=meta)
        check(status, "film session (N-DELETE)")
        sent.status, sent.reason = "DONE", ""
        return sent
    finally:
        if assoc.is_established:
            assoc.release()
