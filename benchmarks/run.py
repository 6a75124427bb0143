"""medcompute's benchmark harness: kernels, service, throughput, scaling, GPU, stored
versions and tiers, DICOM, and the catalog (SQLite against PostgreSQL), in one run on one
machine, every figure a ratio against a baseline measured in that run.

    python benchmarks/run.py            # full (make bench)
    python benchmarks/run.py --quick    # CI-sized machines, a few minutes (make bench-quick)
    python benchmarks/run.py --tiny     # smoke run of every section on small arrays

Writes ``benchmarks/results/<timestamp>.json`` and ``benchmarks/results/report.html``
(a self-contained page with the plots; open it in a browser).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import catalog_bench  # noqa: E402
import common  # noqa: E402
import dicom_ingest  # noqa: E402
import dicomweb_bench  # noqa: E402
import kernels_bench  # noqa: E402
import report  # noqa: E402
import service_bench  # noqa: E402
import store_orthanc  # noqa: E402
import targets  # noqa: E402
import versions_bench  # noqa: E402

SECTIONS = ("kernels", "service", "store", "throughput", "scaling", "gpu", "versions", "dicom",
            "orthanc", "catalog", "dicomweb")
SERVICE_SECTIONS = ("service", "store", "throughput", "scaling")


def _log(message: str) -> None:
    print(message, flush=True)


def _guarded(name: str, fn, *args) -> dict:
    """Run a section; a failure is recorded with its traceback, not as zero figures."""
    try:
        return fn(*args)
    except Exception as exc:
        _log(f"{name}: failed: {exc!r}")
        return {"available": False, "reason": f"failed: {exc!r}",
                "traceback": traceback.format_exc()}


def run(mode: str, sections: set[str], out_dir: Path, *, wait_idle: float = 0.0,
        html: bool = True) -> dict:
    sizes = common.MODES[mode]
    started = time.time()
    idle = common.wait_for_idle(wait_idle) if wait_idle else {
        "waited_seconds": 0.0, "busy_fraction": common.busy_fraction(1.0)}
    results: dict = {
        "meta": {"mode": mode, "sizes": {k: v for k, v in vars(sizes).items()},
                 "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
                 "command": " ".join([Path(sys.executable).name] + sys.argv),
                 "machine": common.machine(), "background_before": idle},
    }
    if "kernels" in sections:
        results["kernels"] = _guarded("kernels", kernels_bench.run, sizes, _log, wait_idle)
    else:
        results["kernels"] = {"available": False, "reason": "not run (--sections)",
                              "results": []}
    wanted = sections & set(SERVICE_SECTIONS)
    service = _guarded("service", service_bench.run_all, sizes, sections, _log,
                       wait_idle) if wanted else {}
    if service.get("available") is False:  # the servers did not start: say so everywhere
        service = {name: dict(service) for name in SERVICE_SECTIONS}
    for name in SERVICE_SECTIONS:
        results[name] = service.get(name) or {"available": False,
                                              "reason": "not run (--sections)"}
    if "gpu" in sections:
        results["gpu"] = _guarded("gpu", kernels_bench.run_gpu, sizes,
                                  results["kernels"].get("results", []), _log)
    else:
        results["gpu"] = {"available": False, "reason": "not run (--sections)", "results": []}
    if "versions" in sections:
        results["versions"] = _guarded("versions", versions_bench.run, sizes, _log)
    else:
        results["versions"] = {"available": False, "reason": "not run (--sections)"}
    if "dicom" in sections:
        results["dicom"] = _guarded("dicom", dicom_ingest.run, sizes, _log)
    else:
        results["dicom"] = {"available": False, "reason": "not run (--sections)"}
    if "orthanc" in sections:
        results["orthanc"] = _guarded("orthanc", store_orthanc.run, sizes, _log)
    else:
        results["orthanc"] = {"available": False, "reason": "not run (--sections)"}
    if "catalog" in sections:
        results["catalog"] = _guarded("catalog", catalog_bench.run, sizes, _log)
    else:
        results["catalog"] = {"available": False, "reason": "not run (--sections)"}
    if "dicomweb" in sections:
        results["dicomweb"] = _guarded("dicomweb", dicomweb_bench.run, sizes, _log)
    else:
        results["dicomweb"] = {"available": False, "reason": "not run (--sections)"}
    results["targets"] = targets.evaluate(results)
    finished = time.time()
    results["meta"]["finished"] = datetime.fromtimestamp(finished, timezone.utc).isoformat()
    results["meta"]["duration_seconds"] = round(finished - started, 1)
    results["meta"]["background_after"] = {"busy_fraction": common.busy_fraction(1.0)}

    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S")
    json_path = out_dir / f"{stamp}-{mode}.json"
    json_path.write_text(json.dumps(results, indent=1, default=_jsonable))
    results["meta"]["json"] = str(json_path)
    if html:
        html_path = out_dir / "report.html"
        html_path.write_text(report.render(results))
        results["meta"]["html"] = str(html_path)
    return results


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def summary(results: dict) -> str:
    lines = []
    for t in results["targets"]:
        mark = {True: "met     ", False: "MISSED  "}.get(
            t["met"], "absent  " if t["value"] is None else "unjudged")
        value = t["value"]
        shown = "-" if value is None else f"{value:.3g}{t['unit']}"
        lines.append(f"  [{mark}] {t['what']}: {shown} (target {t['target']})"
                     + (f" - {t['note']}" if t["note"] else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="fewer repeats and images: a few minutes on 2 cores")
    mode.add_argument("--tiny", action="store_const", dest="mode", const="tiny",
                      help="every section on small arrays (a smoke test, not a measurement)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="folder for the JSON and report.html (default benchmarks/results)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine: wait up to this long for other processes "
                             "to go quiet, at the start and before each kernel")
    parser.add_argument("--no-html", action="store_true", help="write the JSON only")
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    results = run(args.mode or "full", sections, args.out, wait_idle=args.wait_idle,
                  html=not args.no_html)
    print(summary(results))
    print(f"wrote {results['meta']['json']}" + (
        f" and {results['meta']['html']}" if "html" in results["meta"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
