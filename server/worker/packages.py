"""Software packages on a Dask worker: installed by a worker plug-in, run in a sandbox.

``SoftwarePlugin`` (:func:`software_plugin`) carries one approved package version's
wheel; Dask runs its ``setup`` on every worker, those that join later included, which
installs the wheel (``pip install --no-deps --no-index --target``) into a folder of its
own under the worker's local directory, so two versions coexist. :func:`apply` runs one of its
operations on an image in a separate process (``sandbox.py``) with an address-space
limit and a time limit: a package that raises, exits, blows up its memory or never
returns fails its own job with the reason, and the worker and the other jobs go on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcompute.server.errors import FailedPrecondition
from medcompute.server.worker import plugins

__all__ = ["GROUP", "PackageRun", "apply", "describe", "install", "installed", "plugin_name",
           "software_plugin"]

GROUP = "medcompute.operations"
SANDBOX = str(Path(__file__).with_name("sandbox.py"))
RAISED, OUT_OF_MEMORY, NO_OPERATION = 2, 3, 4
#: Where each installed version is on this worker: (name, version, sha256) -> folder.
_INSTALLED: dict[tuple[str, str, str], str] = {}
_LOCK = threading.Lock()
#: One thread per core inside the sandbox: a package's operation is one call of its own.
_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class PackageRun:
    """What a worker needs to run a package's operation (a resolved op's ``kwargs``)."""

    name: str
    version: str
    sha256: str
    operation: str
    params: dict
    wheel: str                 # the wheel's path in the data directory
    memory_bytes: int
    seconds: float
    #: The publisher's fee for one use (a line of the job's usage record).
    fee: float = 0.0


def plugin_name(name: str, version: str) -> str:
    return f"medcompute-software-{name}-{version}"


def _folder(root: str | Path, name: str, version: str, sha256: str) -> Path:
    return Path(root) / "software" / f"{name}-{version}-{sha256[:16]}"


def install(wheel: str | Path, folder: str | Path) -> str:
    """Install ``wheel`` (no dependencies, no index) into ``folder``, once."""
    folder = Path(folder)
    done = folder / ".installed"
    if done.exists():
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".part"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--no-compile", "--target", str(tmp), str(wheel)],
        capture_output=True, text=True)
    if proc.returncode != 0:
        raise FailedPrecondition(f"the wheel could not be installed: "
                                 f"{proc.stderr.strip()[-500:]}", "wheel")
    (tmp / ".installed").touch()
    try:
        os.replace(tmp, folder)
    except OSError:            # another process installed it meanwhile
        pass
    return str(folder)


def installed() -> dict[tuple[str, str, str], str]:
    """The versions installed on this worker process and their folders."""
    return dict(_INSTALLED)


def _local_root() -> str:
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except ValueError:         # not on a Dask worker
        return tempfile.gettempdir()


def _ensure(run: PackageRun) -> str:
    key = (run.name, run.version, run.sha256)
    with _LOCK:
        if key not in _INSTALLED:
            _INSTALLED[key] = install(run.wheel, _folder(_local_root(), *key))
        return _INSTALLED[key]


class _Software:
    """A Dask worker plug-in that installs one package version on every worker, those
    that join later included."""

    idempotent = True

    def __init__(self, name: str, version: str, sha256: str, filename: str, wheel: bytes):
        self.name, self.version, self.sha256 = name, version, sha256
        self.filename, self.wheel = filename, wheel

    def setup(self, worker=None) -> None:
        key = (self.name, self.version, self.sha256)
        root = worker.local_directory if worker is not None else _local_root()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / self.filename      # pip reads the wheel's tags from its name
            path.write_bytes(self.wheel)
            with _LOCK:
                _INSTALLED[key] = install(path, _folder(root, *key))


def software_plugin(name: str, version: str, sha256: str, filename: str, wheel: bytes):
    """The worker plug-in that installs this version (the wheel ``filename``, its bytes):
    a ``SoftwarePlugin``, made on first use (plugins.py)."""
    return plugins.plugin_class(__name__, "SoftwarePlugin", _Software)(
        name, version, sha256, filename, wheel)


__getattr__ = plugins.module_getattr(__name__, {"SoftwarePlugin": _Software})


def describe(folder: str | Path, *, memory_bytes: int, seconds: float) -> list[dict]:
    """The operations the package installed in ``folder`` declares (loaded in a sandbox)."""
    proc = _sandbox(["describe", str(folder)], seconds)
    if proc.returncode != 0:
        raise FailedPrecondition(
            f"the package could not be loaded: {_tail(proc.stderr) or _ended(proc.returncode)}",
            "wheel")
    return json.loads(proc.stdout)


def _sandbox(args: list[str], seconds: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, SANDBOX, *args], capture_output=True, text=True,
                              timeout=seconds, env={**os.environ, **_ENV})
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, -1, "", f"ran past its limit of {seconds:g} s")


def _tail(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _ended(code: int) -> str:
    if code < 0:
        return f"its process was killed by signal {-code}"
    return f"its process exited with status {code}"


def apply(run: PackageRun, image, field: str):
    """``run``'s operation on ``image`` (any backend's array), in a sandbox process.

    FailedPrecondition naming ``field`` and the reason when the operation fails; the
    result is on ``image``'s backend, in its dtype."""
    from medcompute import kernels

    backend = kernels.backend_for(image)
    host = np.ascontiguousarray(backend.to_host(image))
    folder = _ensure(run)
    what = f"{run.operation} of {run.name} {run.version}"
    with tempfile.TemporaryDirectory(prefix="medcompute-sandbox-") as tmp:
        source, target = os.path.join(tmp, "in.npy"), os.path.join(tmp, "out.npy")
        np.save(source, host, allow_pickle=False)
        proc = _sandbox(["run", folder, run.operation, source, json.dumps(run.params), target,
                         str(run.memory_bytes)], run.seconds)
        code = proc.returncode
        if code == RAISED:
            with open(target + ".error") as f:
                raise FailedPrecondition(f"{what} failed: {f.read()}", field)
        if code == OUT_OF_MEMORY:
            raise FailedPrecondition(f"{what} needed more than its memory limit of "
                                     f"{run.memory_bytes / 2**20:g} MiB", field)
        if code == NO_OPERATION:
            raise FailedPrecondition(f"{run.name} {run.version} has no operation "
                                     f"{run.operation!r}", field)
        if code == -1 and not os.path.exists(target):
            raise FailedPrecondition(f"{what} {proc.stderr}", field)
        if code != 0:
            raise FailedPrecondition(f"{what} failed: {_ended(code)}"
                                     + (f" ({_tail(proc.stderr)})" if _tail(proc.stderr)
                                        else ""), field)
        result = np.load(target, allow_pickle=False)
    if result.shape != host.shape:
        raise FailedPrecondition(f"{what} returned an image of shape {result.shape}; "
                                 f"expected the shape it was given, {host.shape}", field)
    return backend.asarray(result.astype(host.dtype, copy=False))
