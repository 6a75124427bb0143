"""The Print servicer: translation only. Hard copy of a stored image by its id."""

from __future__ import annotations

from dataclasses import asdict

from medcompute.proto.v1 import print_pb2, print_pb2_grpc
from medcompute.server.api.guard import Guard, rpc
from medcompute.server.dicomnet.films import PrintOptions
from medcompute.server.storage.prints import PrintJob

__all__ = ["PrintServicer", "job_message"]


def job_message(job: PrintJob) -> print_pb2.PrintJob:
    fields = asdict(job)
    for name in ("subscriber", "film_session_uid"):
        del fields[name]
    return print_pb2.PrintJob(**fields)


class PrintServicer(print_pb2_grpc.PrintServiceServicer):
    def __init__(self, printing, guard: Guard):
        self.printing = printing          # dicomnet.printing.Printing
        self.guard = guard

    @rpc("print.image", ("store", "process"))
    async def PrintImage(self, request, context, call):
        call.object_id, call.detail = request.image_id, f"on {request.printer}"
        options = PrintOptions(
            display_format=request.display_format or "STANDARD\\1,1",
            film_size=request.film_size or "8INX10IN",
            orientation=request.orientation or "PORTRAIT",
            copies=request.copies or 1, slices=tuple(request.slices), mip=request.mip,
            bits=request.bits or 8, medium_type=request.medium_type)
        job = await self.printing.print_image(call.principal.subscriber, request.image_id,
                                              request.printer, options)
        return print_pb2.PrintImageResponse(job=job_message(job))

    @rpc("print.list", ("store", "process"), audit=False)
    async def ListPrintJobs(self, request, context, call):
        jobs = await self.printing.jobs(call.principal.subscriber)
        return print_pb2.ListPrintJobsResponse(jobs=[job_message(j) for j in jobs])
