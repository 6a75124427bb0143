"""The approved packages' operations, as the pipeline resolver looks them up.

One :class:`ApprovedOps` per server process (:data:`APPROVED`), bound to the registry's
tables when the server starts (:meth:`ApprovedOps.bind`). It reads a package's versions
from the catalog when it has not read them for :data:`FRESH_SECONDS`, and again after
every approval or retirement this process made: an approval or retirement by another
server sharing the data directory is seen within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from medcompute.server.errors import FailedPrecondition, NotFound, shown_id
from medcompute.server.storage.software import PackageRow

__all__ = ["APPROVED", "ApprovedOps", "FRESH_SECONDS", "Limits", "version_key"]

#: How long a package's versions, once read, are used without reading them again.
FRESH_SECONDS = 2.0


def version_key(version: str) -> tuple:
    """An order of versions: numeric parts as numbers (``1.10`` after ``1.9``)."""
    parts = []
    for part in version.replace("-", ".").split("."):
        parts.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return tuple(parts)


@dataclass(frozen=True)
class Limits:
    """What a package's operation may use on a worker for one image."""

    memory_bytes: int = 1 << 30
    seconds: float = 120.0


@dataclass(frozen=True, eq=False)
class _Binding:
    load: Callable[[str], list[PackageRow]]
    wheel: Callable[[str], str]
    limits: Limits


class ApprovedOps:
    def __init__(self):
        #: The registries bound, the last one current (servers started in one process,
        #: as the tests do, each bound while it runs).
        self._bindings: list[_Binding] = []
        self._cache: dict[str, tuple[float, list[PackageRow]]] = {}
        self._lock = threading.Lock()

    @property
    def _load(self):
        return self._bindings[-1].load if self._bindings else None

    @property
    def limits(self) -> Limits:
        return self._bindings[-1].limits if self._bindings else Limits()

    def bind(self, load: Callable[[str], list[PackageRow]], wheel: Callable[[str], str],
             limits: Limits) -> object:
        """``load(name)``: every version of a package from the catalog; ``wheel(sha256)``:
        the path of its wheel. Returns the binding, for :meth:`unbind`."""
        binding = _Binding(load, wheel, limits)
        with self._lock:
            self._bindings.append(binding)
            self._cache.clear()
        return binding

    def unbind(self, binding) -> None:
        """Forget a binding (its registry closed); the one bound before it is current."""
        with self._lock:
            if binding in self._bindings:
                self._bindings.remove(binding)
            self._cache.clear()

    def forget(self, name: str = "") -> None:
        """Read ``name`` (every package when empty) from the catalog at its next lookup."""
        with self._lock:
            if name:
                self._cache.pop(name, None)
            else:
                self._cache.clear()

    def wheel(self, sha256: str) -> str:
        return self._bindings[-1].wheel(sha256) if self._bindings else ""

    def _versions(self, name: str) -> list[PackageRow]:
        with self._lock:
            at, rows = self._cache.get(name, (0.0, None))
            now = time.monotonic()
            if (rows is None or now - at > FRESH_SECONDS) and self._load is not None:
                rows = self._load(name)
                self._cache[name] = (now, rows)
            return rows or []

    def find(self, name: str, version: str, field: str) -> PackageRow:
        """The approved version ``version`` of ``name`` (its newest approved one when
        ``version`` is empty); NotFound or FailedPrecondition naming ``field``."""
        rows = self._versions(name)
        if not rows:
            raise NotFound(f"no software package {shown_id(name)}; `medcompute software "
                           "list` shows the approved ones", f"{field}.package")
        if not version:
            approved = [r for r in rows if r.status == "approved"]
            if not approved:
                raise FailedPrecondition(f"package {shown_id(name)} has no approved version",
                                         f"{field}.package")
            return max(approved, key=lambda r: version_key(r.version))
        for row in rows:
            if row.version == version:
                if row.status != "approved":
                    raise FailedPrecondition(
                        f"version {shown_id(version)} of {shown_id(name)} is {row.status}; "
                        "only approved versions run", f"{field}.version")
                return row
        raise NotFound(f"package {shown_id(name)} has no version {shown_id(version)}; it has "
                       f"{', '.join(r.version for r in rows)}", f"{field}.version")

    def approved(self) -> list[PackageRow]:
        """Every approved version of the packages read so far and of those ``load('')``
        returns (the listing of ListOperations)."""
        load = self._load
        rows = load("") if load is not None else []
        return [r for r in rows if r.status == "approved"]


#: The approved operations of this server process (bound in app.py).
APPROVED = ApprovedOps()
