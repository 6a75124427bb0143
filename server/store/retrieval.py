"""What a Get call sends: an image's voxels, its DICOM files or a compressed version of
them, as the study's reading status allows, with the tier it is read from.

Domain code, a function of an :class:`~medcompute.server.store.images.ImageStore`: which
version a request names, whether the study's status serves it, whether a resolution level
and a format fit it, the shape of what is sent, and the read counted on its tier (which,
with ``--recall-on-read``, moves a cold image back hot). The Store servicer translates the
request to these arguments and the result to its reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from medcompute.server.dicom.j2k import reduced_size
from medcompute.server.errors import InvalidArgument
from medcompute.server.storage.images import ImageRecord
from medcompute.server.store.coding import Coder, StreamInfo
from medcompute.server.store.images import ImageStore
from medcompute.server.store.tiers import COLD
from medcompute.server.store.versions import ORIGINAL, ROLE_PREFIX, Version

__all__ = ["Retrieval", "retrieve", "FORMATS"]

#: The formats of an image asked for: "" (the default: the voxels, or a version's
#: files), its voxels, or its DICOM files.
FORMATS = ("", "voxels", "dicom")


@dataclass(frozen=True)
class Retrieval:
    """What Get sends of one image."""

    #: The image as stored once the version was made (counted in its stored bytes).
    record: ImageRecord
    info: StreamInfo
    #: The shape of the data sent: a resolution level reduces each frame per axis.
    shape: tuple[int, ...]
    #: The chunk payloads; close them (``aclose``) when not all are sent.
    payloads: AsyncIterator[bytes]
    #: The version sent; None: the original (voxels or DICOM files).
    version: Version | None = None
    level: int = 0
    #: Read from the cold tier (False for a header-only call, which reads no data).
    cold: bool = False


async def retrieve(store: ImageStore, image_id: str, *, owner: str, coder: Coder,
                   fmt: str = "", version: str = "", level: int = 0,
                   header_only: bool = False) -> Retrieval:
    """The image ``image_id`` of ``owner`` (NotFound otherwise), or its ``version`` (a
    version's name or purpose; "" or ``original``: the files as registered), cut to
    resolution ``level`` (versions only), its payloads coded by ``coder``.

    Unless ``header_only``, FailedPrecondition when the study's reading status does not
    serve that version, and the read is counted on the tier it comes from.
    """
    record = await store.get(image_id, owner=owner)
    spec = store.versions.resolve(version)
    if not header_only:
        await store.readable(record, spec.name if spec is not None else ORIGINAL)
    made = None
    if spec is None:
        if level:
            raise InvalidArgument("resolution levels are served from a compressed version; "
                                  "name one in version", "resolution_level")
        info, payloads = store.stream(record, fmt or "voxels", coder)
        role = "dicom" if fmt == "dicom" else "voxels"
    else:
        if fmt == "voxels":
            raise InvalidArgument("a version is sent as its DICOM files: leave format unset or "
                                  "ask for STORED_FORMAT_DICOM", "format")
        made, info, payloads = await store.versions.fetch(record, spec, level, coder)
        record = await store.get(image_id, owner=owner)
        role = ROLE_PREFIX + made.name
    shape = tuple(record.shape)
    if made is not None and level:   # each frame reduced per axis
        shape = shape[:-2] + tuple(reduced_size(n, level) for n in shape[-2:])
    cold = not header_only and store.tiers.read_from(record, role) == COLD
    return Retrieval(record, info, shape, payloads, made, level, cold)
