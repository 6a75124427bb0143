"""DICOM peers for the tests: dcmtk's programs and Orthanc, real processes on free
loopback ports with their data in temporary directories, stopped by their pid.

`make peers` installs them (dcmtk, orthanc packages); the packaged Orthanc service is
never used: each test's Orthanc runs with its own JSON configuration.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["free_port", "program", "StoreSCP", "Orthanc", "storescu", "wait_port",
           "association_request"]

_SBIN = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")


def program(name: str) -> str:
    """The path of a DICOM peer's program; `make peers` installs it."""
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in _SBIN if os.access(f"{d}/{name}", os.X_OK)), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `make peers` (dcmtk, orthanc)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the peer exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


class StoreSCP:
    """dcmtk's ``storescp``: accepts every storage SOP class, writes files to ``folder``."""

    def __init__(self, folder: Path, aet: str = "DCMTKSCP", port: int | None = None,
                 extra: tuple[str, ...] = ()):
        self.folder = Path(folder)
        self.aet = aet
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        # +xa: accept every transfer syntax it knows, -uf: name files by SOP instance UID.
        self.proc = subprocess.Popen(
            [program("storescp"), "-aet", self.aet, "+xa", "-uf", "-od", str(self.folder),
             *self.extra, str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def __enter__(self) -> StoreSCP:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Orthanc:
    """An Orthanc server with its own configuration, storage and index in ``folder``."""

    def __init__(self, folder: Path, aet: str = "ORTHANC", modalities: dict | None = None,
                 check_called_aet: bool = False, lua: str = "", extra: dict | None = None):
        self.folder = Path(folder)
        self.extra = extra or {}         # more configuration (e.g. MaximumStorageSize)
        self.lua = lua                   # a Lua script Orthanc runs (its callbacks)
        self.check_called_aet = check_called_aet
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.modalities = modalities or {}
        self.proc: subprocess.Popen | None = None

    def config(self) -> dict:
        return {
            "Name": "medcompute-test", "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "HttpServerEnabled": True,
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomModalities": self.modalities, "DicomCheckCalledAet": self.check_called_aet,
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "UnknownSopClassAccepted": True, "Plugins": [], "ConcurrentJobs": 2,
            "StorageCommitmentReportsSize": 100,
            "LuaScripts": [str(self.folder / "script.lua")] if self.lua else [],
            **self.extra,
        }

    def start(self) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.lua:
            (self.folder / "script.lua").write_text(self.lua)
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(self.config(), indent=1))
        self.proc = subprocess.Popen([program("Orthanc"), str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.http_port, self.proc)
        wait_port(self.dicom_port, self.proc)
        return self

    def stop(self) -> None:
        """Killed (SIGKILL): Orthanc's own shutdown waits out its threads' polling, about
        2 s each time, and no test reads its folder once it is stopped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def rest(self, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def rest_post(self, path: str, text: str):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}",
                                     data=text.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def rest_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                    timeout=30) as r:
            return r.read()

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def storescu(port: int, files, *, aet: str = "SCANNER", called: str = "MEDCOMPUTE",
             extra: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess:
    """dcmtk's ``storescu`` sending ``files`` to 127.0.0.1:port; its exit status and output."""
    return subprocess.run(
        [program("storescu"), "-aet", aet, "-aec", called, *extra, "127.0.0.1", str(port),
         *[str(f) for f in files]],
        capture_output=True, text=True, timeout=timeout)


@functools.cache
def association_request(calling: str = "FUZZER", called: str = "MEDCOMPUTE") -> bytes:
    """An A-ASSOCIATE-RQ PDU, encoded, proposing Verification (context 1), CT Image
    Storage (3) and MR Image Storage (5) in the default transfer syntax."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        ImplementationClassUIDNotification,
        MaximumLengthNotification,
    )
    from pynetdicom.presentation import build_context
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification
    from pynetdicom.transport import AddressInformation

    rq = A_ASSOCIATE()
    rq.application_context_name = "1.2.840.10008.3.1.1.1"
    rq.calling_ae_title, rq.called_ae_title = calling, called
    contexts = []
    for abstract, context_id in ((Verification, 1), (CTImageStorage, 3),
                                  (MRImageStorage, 5)):
        cx = build_context(abstract)
        cx.context_id = context_id
        contexts.append(cx)
    rq.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    uid = ImplementationClassUIDNotification()
    uid.implementation_class_uid = "1.2.826.0.1.3680043.9.7433.1"
    rq.user_information = [length, uid]
    rq.calling_presentation_address = AddressInformation("127.0.0.1", 0)
    rq.called_presentation_address = AddressInformation("127.0.0.1", 104)
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(rq)
    return pdu.encode()
