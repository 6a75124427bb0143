"""The process a package's operation runs in, apart from the Dask worker.

Run as a script (``python sandbox.py MODE ...``), never imported by the server, so that
the process holds only NumPy and the package: it puts the package's folder first on
``sys.path``, limits its own address space (RLIMIT_AS, soft and hard, so the package
cannot raise it) and then loads the entry point.

    describe FOLDER                        print the operations as JSON on stdout
    run FOLDER OPERATION IN.npy PARAMS OUT.npy MEMORY_BYTES

Exit status: 0 done; 2 the operation raised (its type and message in ``OUT.npy.error``);
3 it ran out of the memory it may use; 4 no such operation. Anything else (an exit of
its own, a signal) is reported by the caller as it happened.
"""

from __future__ import annotations

import json
import sys

GROUP = "medcompute.operations"
RAISED, OUT_OF_MEMORY, NO_OPERATION = 2, 3, 4


def _entry_points(folder: str) -> dict:
    from importlib import metadata

    found = {}
    for dist in metadata.distributions(path=[folder]):
        for ep in dist.entry_points:
            if ep.group == GROUP:
                found[ep.name] = ep
    return found


def _describe(folder: str) -> list[dict]:
    out = []
    for name, ep in sorted(_entry_points(folder).items()):
        fn = ep.load()
        doc = (getattr(fn, "__doc__", None) or "").strip()
        params = []
        for pname, spec in dict(getattr(fn, "params", {}) or {}).items():
            spec = dict(spec or {})
            params.append({"name": str(pname), "unit": str(spec.get("unit", "")),
                           "default": float(spec.get("default", 0.0)),
                           "description": str(spec.get("description", ""))})
        out.append({"name": name, "summary": doc.splitlines()[0] if doc else "",
                    "doc": doc, "parameters": params})
    return out


def _limit(memory: int) -> None:
    import resource

    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def main(argv: list[str]) -> int:
    mode, folder = argv[0], argv[1]
    sys.path[0] = folder          # instead of this script's own folder
    if mode == "describe":
        print(json.dumps(_describe(folder)))
        return 0
    operation, source, params, target, memory = argv[2:7]
    import numpy as np

    image = np.load(source)
    _limit(int(memory))
    try:
        ep = _entry_points(folder).get(operation)
        if ep is None:
            return NO_OPERATION
        fn = ep.load()
        result = np.asarray(fn(image, **json.loads(params)))
        np.save(target, result, allow_pickle=False)
    except MemoryError:
        return OUT_OF_MEMORY
    except Exception as exc:  # the package's own failure: reported as its job's
        with open(target + ".error", "w") as f:
            f.write(f"{type(exc).__name__}: {exc}"[:2000])
        return RAISED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
