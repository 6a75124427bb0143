"""The PrintService of a medcompute server (also ``Client.printing``): hard copy of a
stored image on a DICOM printer registered as one of the caller's nodes."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from medcompute.client.calls import DEFAULT_SERVER, call
from medcompute.client.channel import open_channel
from medcompute.proto.v1 import print_pb2, print_pb2_grpc

__all__ = ["PrintClient"]


class PrintClient:
    """Parameters as for ``StoreClient``: an address or a shared ``channel``."""

    def __init__(self, address: str = DEFAULT_SERVER, *, timeout: float = 600.0,
                 channel: grpc.Channel | None = None, **connection):
        self.timeout = timeout
        self._own = channel is None
        self._channel = channel or open_channel(address, **connection)
        self._stub = print_pb2_grpc.PrintServiceStub(self._channel)

    def close(self) -> None:
        if self._own:
            self._channel.close()

    def __enter__(self) -> PrintClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def print_image(self, image_id: str, printer: str, *, display_format: str = "",
                    film_size: str = "", orientation: str = "", copies: int = 0,
                    slices: Sequence[int] = (), mip: bool = False, bits: int = 0,
                    medium_type: str = "") -> print_pb2.PrintJob:
        """Print a stored image on the node ``printer``; the print job (its status, the
        printer's status, the sheets printed)."""
        return call(self._stub.PrintImage, print_pb2.PrintImageRequest(
            image_id=image_id, printer=printer, display_format=display_format,
            film_size=film_size, orientation=orientation, copies=copies, slices=list(slices),
            mip=mip, bits=bits, medium_type=medium_type), timeout=self.timeout).job

    def jobs(self) -> list[print_pb2.PrintJob]:
        return list(call(self._stub.ListPrintJobs, print_pb2.ListPrintJobsRequest(),
                         timeout=self.timeout).jobs)
