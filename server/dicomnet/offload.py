"""Storage offload: collect a source's oldest studies when its free capacity runs low.

A source registered with a capacity URL (an Orthanc's REST API) and a threshold (a
percentage of its maximum storage, or MiB) is asked, on each run of its schedule, what
it holds: Orthanc's ``/statistics`` reports ``TotalDiskSize`` (bytes of its storage
area); its maximum (``MaximumStorageSize`` of its configuration, MB) is read from
``/system`` where the Orthanc reports it, else it must be given at registration
(Orthanc 1.10 does not report it). A source whose maximum is not known, or 0 (no
limit), gets a state that says so, and nothing is collected: the free capacity is never
guessed. When the free capacity is below the threshold, the source's studies are found
by C-FIND (study level), the oldest first (study date, then time; studies without a date
last), and collected through the ordinary collect path (series collected before are not
fetched again) until the free capacity, counting each collected study's size as freed,
is above the threshold. Nothing is deleted from the source: that stays its owner's
decision (an Orthanc with ``MaximumStorageMode: Recycle`` deletes its oldest patients by
itself once full; offload makes sure they were collected first).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from medcompute.server.errors import InvalidArgument

__all__ = ["Offload", "check_offload", "Capacity", "read_capacity", "threshold_bytes",
           "MIB"]

MIB = 1 << 20


@dataclass(frozen=True)
class Offload:
    url: str = ""
    below_percent: float = 0.0
    below_mib: int = 0
    max_mib: int = 0


def check_offload(o: Offload, every: int) -> Offload:
    url = o.url.strip().rstrip("/")
    if not url:
        for field, value in (("offload_below_percent", o.below_percent),
                             ("offload_below_mib", o.below_mib),
                             ("capacity_max_mib", o.max_mib)):
            if value:
                raise InvalidArgument("a storage offload threshold needs the source's "
                                      "capacity_url", f"source.{field}")
        return Offload()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"expected http://HOST:PORT or https://HOST:PORT, got {url!r}",
                              "source.capacity_url")
    if bool(o.below_percent) == bool(o.below_mib):
        raise InvalidArgument("expected one threshold: offload_below_percent or "
                              "offload_below_mib", "source.offload_below_percent")
    if o.below_percent and not 0 < o.below_percent < 100:
        raise InvalidArgument(f"expected a percentage between 0 and 100, got "
                              f"{o.below_percent:g}", "source.offload_below_percent")
    if o.max_mib and o.below_mib and o.below_mib >= o.max_mib:
        raise InvalidArgument("expected a threshold below the source's maximum storage",
                              "source.offload_below_mib")
    if every <= 0:
        raise InvalidArgument("the capacity is checked on the source's schedule: set "
                              "every_seconds", "source.every_seconds")
    return Offload(url, o.below_percent, o.below_mib, o.max_mib)


@dataclass(frozen=True)
class Capacity:
    used: int                   # bytes
    maximum: int                # bytes; 0: not known
    why_unknown: str = ""

    @property
    def free(self) -> int:
        return max(self.maximum - self.used, 0)


def _get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:      # noqa: S310 (http/https)
        return json.loads(r.read())


def read_capacity(o: Offload, timeout: float = 10.0) -> Capacity:
    """What the source reports (blocking); ``why_unknown`` when its free capacity is not
    known."""
    try:
        stats = _get(f"{o.url}/statistics", timeout)
        system = _get(f"{o.url}/system", timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        return Capacity(0, 0, f"the capacity URL did not answer ({why})")
    try:
        used = int(stats["TotalDiskSize"])
    except (KeyError, TypeError, ValueError):
        return Capacity(0, 0, "the capacity URL does not report TotalDiskSize (is it an "
                        "Orthanc?)")
    reported = system.get("MaximumStorageSize")
    maximum_mb = int(reported) if isinstance(reported, int | float) and reported else 0
    maximum = maximum_mb * MIB if maximum_mb else o.max_mib * MIB
    if not maximum:
        why = ("the source reports no storage limit (MaximumStorageSize 0)"
               if reported == 0 else "the source reports what it uses but not its maximum "
               "storage: register it with capacity_max_mib")
        return Capacity(used, 0, why)
    return Capacity(used, maximum)


def threshold_bytes(o: Offload, maximum: int) -> int:
    if o.below_percent:
        return int(maximum * o.below_percent / 100)
    return o.below_mib * MIB


def study_size(o: Offload, study_uid: str, timeout: float = 10.0) -> int | None:
    """Bytes the source keeps for a study (Orthanc: ``/tools/lookup``, then the study's
    ``/statistics`` DiskSize); None when it does not say."""
    req = urllib.request.Request(f"{o.url}/tools/lookup", data=study_uid.encode(),
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:      # noqa: S310
            found = json.loads(r.read())
        (study,) = [f for f in found if f.get("Type") == "Study"]
        return int(_get(f"{o.url}/studies/{study['ID']}/statistics", timeout)["DiskSize"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return None


def oldest_first(studies: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(study UID, StudyDate, StudyTime), the oldest first; those without a date last."""
    return sorted(studies, key=lambda s: (not s[1], s[1], s[2] or "", s[0]))


def describe(n: int) -> str:
    return f"{n / MIB:.2f} MiB"
