"""The Python client: one class, a context manager, one exception type."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import grpc

from medcompute.client.batch import process_many, submit_many
from medcompute.client.calls import (
    DEFAULT_SERVER,
    Result,
    ServiceError,
    _Assembly,
    _stream,
    call,
)
from medcompute.client.channel import open_channel
from medcompute.client.dicom import DicomClient
from medcompute.client.output import message_json
from medcompute.client.printing import PrintClient
from medcompute.client.request import _header, _messages
from medcompute.client.shm import SharedArena, again_if_forgotten, is_local, process_shared
from medcompute.client.software import SoftwareClient
from medcompute.client.store import StoreClient
from medcompute.proto.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    processing_pb2,
    processing_pb2_grpc,
)

__all__ = ["Client", "Result", "ServiceError", "DEFAULT_SERVER"]

class Client:
    """A connection to a medcompute server.

    Parameters
    ----------
    address : str
        ``HOST:PORT`` of the server; default ``$MEDCOMPUTE_SERVER`` or 127.0.0.1:50051.
    timeout : float
        Seconds each call may take unless the call says otherwise.
    api_key : str, optional
        Sent as ``authorization: Bearer <key>`` on every call; default ``$MEDCOMPUTE_API_KEY``.
    tls_ca, tls_cert, tls_key : path, optional
        TLS: the CA of the server's certificate (default: the system's); a client
        certificate and its key for mTLS. Any of them turns TLS on.
    shared_memory : bool
        With a server on this host (a loopback address or a unix socket), ``process``
        hands it arrays through a POSIX shared-memory region instead of chunks
        (client/shm.py); False always sends chunks. A server that cannot reach the
        region (on another machine) is answered with chunks from then on.

    Examples
    --------
    >>> with Client("127.0.0.1:50051") as c:                      # doctest: +SKIP
    ...     r = c.process(volume, ["gaussian:sigma=2", "edge:operator=sobel"])
    ...     r.array.shape, r.usage["compute_seconds"]
    """

    def __init__(self, address: str = DEFAULT_SERVER, *, timeout: float = 600.0,
                 api_key: str | None = None, tls_ca=None, tls_cert=None, tls_key=None,
                 shared_memory: bool = True):
        self.address = address
        #: Whether ``process`` may use shared memory (until the server refuses it).
        self.shared_memory = shared_memory and is_local(address)
        #: One shared-memory region per call in flight (threads may share a client): all
        #: of them, and those no call uses now.
        self._arenas: list[SharedArena] = []
        self._free: list[SharedArena] = []
        self._arenas_lock = threading.Lock()
        self._store: StoreClient | None = None
        self.timeout = timeout
        self._channel = open_channel(address, api_key=api_key, tls_ca=tls_ca,
                                     tls_cert=tls_cert, tls_key=tls_key)
        self._stub = processing_pb2_grpc.ProcessingServiceStub(self._channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        self._jobs = jobs_pb2_grpc.JobsServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._arenas_lock:
            arenas, self._arenas, self._free = self._arenas, [], []
            store, self._store = self._store, None
        for arena in arenas:
            arena.release()              # unregistered and unlinked
        if store is not None:
            store.close()                # its region; the channel is this client's
        self._channel.close()

    @property
    def store(self):
        """The server's image store (a ``StoreClient`` on this connection)."""
        with self._arenas_lock:
            if self._store is None:
                self._store = StoreClient(channel=self._channel, timeout=self.timeout,
                                          shared_memory=self.shared_memory)
            return self._store

    @property
    def dicom(self):
        """The server's DICOM node settings and received series (a ``DicomClient``)."""
        return DicomClient(channel=self._channel, timeout=self.timeout)

    @property
    def software(self):
        """The server's software registry (a ``SoftwareClient`` on this connection)."""
        return SoftwareClient(channel=self._channel, timeout=self.timeout)

    @property
    def printing(self):
        """The server's print service (a ``PrintClient`` on this connection)."""
        return PrintClient(channel=self._channel, timeout=self.timeout)

    _call = staticmethod(call)

    # -- administration (admin role) ------------------------------------------------
    def create_key(self, subscriber: str, roles, *, certificate_sha256: str = "",
                   timeout: float | None = None):
        """A new API key; the reply's ``api_key`` is the token, shown only now."""
        if isinstance(roles, str):
            roles = [r.strip() for r in roles.split(",") if r.strip()]
        return self._call(self._admin.CreateKey, admin_pb2.CreateKeyRequest(
            subscriber=subscriber, roles=roles, certificate_sha256=certificate_sha256),
            timeout=timeout or self.timeout)

    def list_keys(self, subscriber: str = "", *, timeout: float | None = None):
        return list(self._call(self._admin.ListKeys, admin_pb2.ListKeysRequest(
            subscriber=subscriber), timeout=timeout or self.timeout).keys)

    def revoke_key(self, key_id: str, *, timeout: float | None = None):
        return self._call(self._admin.RevokeKey, admin_pb2.RevokeKeyRequest(key_id=key_id),
                          timeout=timeout or self.timeout).key

    def audit(self, *, since: float = 0, until: float = 0, subscriber: str = "",
              action: str = "", after_seq: int = 0, limit: int = 100,
              timeout: float | None = None):
        """One page of the audit log, oldest first, after ``after_seq``."""
        return list(self._call(self._admin.ListAudit, admin_pb2.ListAuditRequest(
            since=since, until=until, subscriber=subscriber, action=action,
            after_seq=after_seq, page_size=limit), timeout=timeout or self.timeout).entries)

    def operations(self, *, timeout: float | None = None) -> list[dict]:
        """The server's operations with their parameters, units and defaults."""
        reply = self._call(self._stub.ListOperations, processing_pb2.ListOperationsRequest(),
                           timeout=timeout or self.timeout)
        return [message_json(o) for o in reply.operations]

    def process(
        self, image, ops: Sequence, *, spacing: Sequence[float] | None = None,
        operands: Sequence = (), device: str = "auto", output_dtype="float32",
        compute_dtype="float32", output: str = "array", compression: str = "none",
        allow_fallback: bool = False, timeout: float | None = None, progress: bool = False,
        store_result: bool = False, retention: float | None = None, recompute: bool = False,
        priority: str = "normal", shared_memory: bool | None = None,
    ) -> Result:
        """Process an image and return the result.

        Parameters
        ----------
        image : ndarray, path, list of paths, or stored image
            An array; a ``.npy`` file; a DICOM file; several DICOM files or a folder of
            them (one series); or an image in the server's store, as ``"id:ID"`` or a
            ``StoredImage`` (nothing is uploaded: the worker reads it), or one of its
            compressed versions, as ``"id:ID@review"`` (a version's name or purpose).
        ops : sequence
            Operations, as ``"gaussian:sigma=2"`` strings, ``{"op": "gaussian", "sigma": 2}``
            dicts or ``Operation`` messages, applied in order.
        spacing : sequence of float, optional
            Voxel spacing in mm per axis (DICOM input: taken from the files if absent).
        operands : sequence
            Second images for subtract/add, same forms as ``image``.
        device : {"auto", "gpu", "cpu"}
            ``auto``: a GPU worker when one exists and the job fits, else CPU.
        allow_fallback : bool
            With ``device="gpu"``: run on CPU when the cluster has no GPU (the result says
            so) instead of failing with FAILED_PRECONDITION.
        output_dtype, compute_dtype : dtype-like
            Result voxel type (saturating cast) and the precision of the computation.
        output : {"array", "dicom_series", "dicom_file"}
            DICOM output (a derived series) needs DICOM input.
        compression : {"none", "zstd", "blosc"}
            Lossless compression of the chunks both ways.
        store_result : bool
            Keep the result in the store as a derived image (``Result.stored_image_id``).
        retention : float, optional
            With ``store_result``: seconds until the derived image may be purged.
        recompute : bool
            Compute even when the store already holds the result of this request on these
            stored images (otherwise that result is returned, ``Result.reused``).
        priority : {"low", "normal", "high"}
            While calls wait on the server to be computed together (``serve
            --batch-delay``), those of higher priority leave first.
        shared_memory : bool, optional
            An array without operands goes through a shared-memory region when the
            server is on this host (see the class); False: chunks. Default: the client's.
        """
        header, images = _header(image, ops, spacing=spacing, operands=operands, device=device,
                                 output_dtype=output_dtype, compute_dtype=compute_dtype,
                                 output=output, compression=compression,
                                 allow_fallback=allow_fallback, store_result=store_result,
                                 retention=retention, recompute=recompute,
                                 priority=priority)
        if (self.shared_memory if shared_memory is None else shared_memory) \
                and len(images) == 1 and not isinstance(images[0], str) \
                and images[0].array is not None and output == "array" and not store_result:
            result = self._process_shared(header, images[0].array, timeout or self.timeout)
            if result is not None:
                return result
        messages = _messages(header, images, processing_pb2.ProcessRequest, progress,
                             header.result_compression)
        return self._call(self._receive, self._stub.Process(messages,
                                                            timeout=timeout or self.timeout),
                          progress)

    @contextlib.contextmanager
    def _arena(self):
        """One of this client's shared-memory arenas, for one call at a time."""
        with self._arenas_lock:
            if self._free:
                arena = self._free.pop()
            else:
                arena = SharedArena(self._stub, self.timeout)
                self._arenas.append(arena)
        try:
            yield arena
        finally:
            with self._arenas_lock:
                if arena in self._arenas:            # not closed meanwhile
                    self._free.append(arena)

    def _process_shared(self, header, array, timeout: float) -> Result | None:
        """``process`` over this client's shared-memory region (None: the server cannot
        use it; chunks from then on)."""
        with self._arena() as arena:
            result = again_if_forgotten(arena, lambda: process_shared(
                arena, self._stub, header, array, timeout=timeout))
            if result is None:
                self.shared_memory = False
            return result

    def process_many(
        self, images: Sequence, ops: Sequence, *, spacing: Sequence[float] | None = None,
        operands: Sequence = (), device: str = "auto", output_dtype="float32",
        compute_dtype="float32", output: str = "array", compression: str = "none",
        allow_fallback: bool = False, timeout: float | None = None, progress: bool = False,
        store_result: bool = False, retention: float | None = None, recompute: bool = False,
        streams: int = 1, shared_memory: bool | None = None,
    ):
        """Process many images with one pipeline in one batch request; an iterator of
        ``BatchItem`` (``index`` into ``images``, ``result`` or ``error``, ``job_id``) in
        the order the images finish.

        Each image is its own job on the server, with its own result, applied operations
        and usage record; one image failing (``item.error``, a :class:`ServiceError`) does
        not stop the others. Takes the arguments of :meth:`process` (``images``: a
        sequence of what ``image`` takes; ``operands`` must be stored images, shared by
        every image), and:

        streams : int
            Split the images into this many consecutive parts sent as concurrent calls;
            on a round-robin target (``ipv4:127.0.0.1:A,127.0.0.1:B``) each part goes to
            the next server, so the servers share the batch.
        shared_memory : bool, optional
            Arrays in one stream, without operands, with array results not kept in the
            store, go through a shared-memory region when the server is on this host
            (see the class): the images are copied in, each result out as it ends, and
            no pixel travels through gRPC. False: chunks. Default: the client's.

        A mistake in the request (an unknown operation, a stored id that does not exist)
        raises :class:`ServiceError` before any image is processed.
        """
        return process_many(
            self, images, ops, spacing=spacing, operands=operands, device=device,
            output_dtype=output_dtype, compute_dtype=compute_dtype, output=output,
            compression=compression, allow_fallback=allow_fallback, timeout=timeout,
            progress=progress, store_result=store_result, retention=retention,
            recompute=recompute, streams=streams, shared_memory=shared_memory)

    # -- asynchronous jobs -----------------------------------------------------------
    def submit_many(self, images: Sequence, ops: Sequence, *, idempotency_key: str = "",
                    destination: str = "", label: str = "", spacing=None,
                    operands: Sequence = (), device: str = "auto", output_dtype="float32",
                    compute_dtype="float32", output: str = "array", compression: str = "none",
                    allow_fallback: bool = False, store_result: bool = False,
                    retention: float | None = None, recompute: bool = False,
                    timeout: float | None = None, progress: bool = False):
        """Submit many images with one pipeline in one call: a list of ``BatchItem`` in the
        order of ``images``, each with its queued ``job`` (``JobInfo``; watch and fetch it
        by ``job_id``) or the ``error`` its upload ended with.

        Takes the arguments of :meth:`submit`; with ``idempotency_key`` image i's job is
        keyed ``KEY#i``, so the same call again returns the same jobs (``existing``).
        """
        return submit_many(
            self, images, ops, idempotency_key=idempotency_key, destination=destination,
            label=label, spacing=spacing, operands=operands, device=device,
            output_dtype=output_dtype, compute_dtype=compute_dtype, output=output,
            compression=compression, allow_fallback=allow_fallback,
            store_result=store_result, retention=retention, recompute=recompute,
            timeout=timeout, progress=progress)

    def submit(self, image, ops: Sequence, *, idempotency_key: str = "", destination: str = "",
               label: str = "", spacing=None, operands: Sequence = (), device: str = "auto",
               output_dtype="float32", compute_dtype="float32", output: str = "array",
               compression: str = "none", allow_fallback: bool = False,
               store_result: bool = False, retention: float | None = None,
               recompute: bool = False, timeout: float | None = None,
               progress: bool = False) -> jobs_pb2.JobInfo:
        """Submit a job and return at once, with the job queued (its inputs are stored).

        Takes the arguments of :meth:`process`, and:

        idempotency_key : str
            Submitting again with the same key returns the same job (``existing``), never a
            second one; use it to retry a submit whose answer was lost.
        destination : str
            Deliver the result to this subscriber's inbox instead of keeping it.
        label : str
            Free text shown in job lists and the recipient's inbox (no patient data).
        """
        header, images = _header(image, ops, spacing=spacing, operands=operands, device=device,
                                 output_dtype=output_dtype, compute_dtype=compute_dtype,
                                 output=output, compression=compression,
                                 allow_fallback=allow_fallback, store_result=store_result,
                                 retention=retention, recompute=recompute)
        submit = jobs_pb2.SubmitHeader(process=header, idempotency_key=idempotency_key,
                                       destination=destination, label=label)
        messages = _messages(submit, images, jobs_pb2.SubmitRequest, progress,
                             header.result_compression)
        reply = self._call(self._jobs.Submit, messages, timeout=timeout or self.timeout)
        return reply.job

    def job(self, job_id: str, *, timeout: float | None = None) -> jobs_pb2.JobInfo:
        return self._call(self._jobs.GetJob, jobs_pb2.GetJobRequest(job_id=job_id),
                          timeout=timeout or self.timeout).job

    def watch(self, job_id: str, *,
              timeout: float | None = None) -> Iterator[jobs_pb2.WatchJobResponse]:
        """The job's events from its current state until it ends."""
        stream = self._jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=timeout)
        yield from _stream(stream)

    def wait(self, job_id: str, *, timeout: float | None = None) -> jobs_pb2.JobInfo:
        """Block until the job ends; its final JobInfo."""
        last = None
        for event in self.watch(job_id, timeout=timeout):
            last = event.job
        return last if last is not None else self.job(job_id)

    def fetch(self, job_id: str, *, timeout: float | None = None,
              progress: bool = False) -> Result:
        """The result of a SUCCEEDED job (the sender's, or delivered to this subscriber)."""
        return self._call(self._receive, self._jobs.Fetch(jobs_pb2.FetchRequest(job_id=job_id),
                                                          timeout=timeout or self.timeout),
                          progress)

    def cancel(self, job_id: str, *, timeout: float | None = None) -> jobs_pb2.JobInfo:
        return self._call(self._jobs.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id),
                          timeout=timeout or self.timeout).job

    def jobs(self, *, states: Sequence[str] = (), since: float = 0, until: float = 0,
             operation: str = "", label: str = "", subscriber: str = "", limit: int = 50,
             page_token: str = "", timeout: float | None = None) -> jobs_pb2.ListJobsResponse:
        """One page of this subscriber's jobs, newest first (``next_page_token`` for more)."""
        codes = []
        for s in states:
            try:
                codes.append(jobs_pb2.JobState.Value(f"JOB_STATE_{s.upper()}"))
            except ValueError:
                raise ValueError(f"states: unknown state {s!r}; expected one of "
                                 "receiving, queued, running, succeeded, failed, cancelled"
                                 ) from None
        return self._call(self._jobs.ListJobs, jobs_pb2.ListJobsRequest(
            states=codes, since=since, until=until, operation=operation, label=label,
            subscriber=subscriber, page_size=limit, page_token=page_token),
            timeout=timeout or self.timeout)

    def inbox(self, *, unfetched_only: bool = False, after_seq: int = 0, limit: int = 100,
              timeout: float | None = None) -> list[jobs_pb2.Delivery]:
        """Results other subscribers delivered to this one (receive role)."""
        return list(self._call(self._jobs.ListInbox, jobs_pb2.ListInboxRequest(
            unfetched_only=unfetched_only, after_seq=after_seq, page_size=limit),
            timeout=timeout or self.timeout).deliveries)

    def watch_inbox(self, *, after_seq: int = 0, new_only: bool = False,
                    timeout: float | None = None) -> Iterator[jobs_pb2.Delivery]:
        """Every delivery after ``after_seq``, then each new one as it arrives (endless
        unless ``timeout``)."""
        stream = self._jobs.WatchInbox(jobs_pb2.WatchInboxRequest(
            after_seq=after_seq, new_only=new_only), timeout=timeout)
        for message in _stream(stream):
            yield message.delivery

    # -- usage and billing -----------------------------------------------------------
    def usage(self, *, since: float = 0.0, until: float = 0.0, group_by: str = "none",
              subscriber: str = "", all_subscribers: bool = False,
              include_records: bool = False,
              timeout: float | None = None) -> jobs_pb2.GetUsageResponse:
        """Usage totals for a period, grouped by day, operation, device or subscriber."""
        try:
            grouping = jobs_pb2.UsageGrouping.Value(f"USAGE_GROUPING_{group_by.upper()}")
        except ValueError:
            raise ValueError(f"group_by: expected none, day, operation, device or subscriber, "
                             f"got {group_by!r}") from None
        return self._call(self._jobs.GetUsage, jobs_pb2.GetUsageRequest(
            since=since, until=until, group_by=grouping, subscriber=subscriber,
            all_subscribers=all_subscribers, include_records=include_records),
            timeout=timeout or self.timeout)

    def invoice(self, month: str, *, subscriber: str = "", all_subscribers: bool = False,
                timeout: float | None = None) -> jobs_pb2.Invoice:
        """The month's usage (YYYY-MM, UTC) priced with the server's tariff."""
        return self._call(self._jobs.GetInvoice, jobs_pb2.GetInvoiceRequest(
            month=month, subscriber=subscriber, all_subscribers=all_subscribers),
            timeout=timeout or self.timeout).invoice

    # -- delivery rules (admin role) -----------------------------------------------------
    def allow_delivery(self, sender: str, recipient: str, *, timeout: float | None = None):
        return self._call(self._admin.AllowDelivery, admin_pb2.AllowDeliveryRequest(
            sender=sender, recipient=recipient), timeout=timeout or self.timeout).rule

    def disallow_delivery(self, sender: str, recipient: str, *, timeout: float | None = None):
        return self._call(self._admin.DisallowDelivery, admin_pb2.DisallowDeliveryRequest(
            sender=sender, recipient=recipient), timeout=timeout or self.timeout).rule

    def delivery_rules(self, *, sender: str = "", recipient: str = "",
                       timeout: float | None = None):
        return list(self._call(self._admin.ListDeliveryRules, admin_pb2.ListDeliveryRulesRequest(
            sender=sender, recipient=recipient), timeout=timeout or self.timeout).rules)

    def _receive(self, responses, progress: bool) -> Result:
        first = next(responses, None)
        if first is None or first.WhichOneof("msg") != "header":
            raise ServiceError(grpc.StatusCode.INTERNAL, "the server sent no result header")
        assembly = _Assembly(first.header, progress)
        for message in responses:
            assembly.add(message.chunk.data)
        return assembly.result()
