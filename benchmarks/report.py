"""The HTML report: one self-contained page (plots embedded as PNG), from a run's JSON.

    python benchmarks/report.py benchmarks/results/<run>.json [-o report.html]
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from pathlib import Path

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.met { color: #0a7a28; font-weight: 600; } .missed { color: #b3261e; font-weight: 600; }
.absent { color: #777; } .note { color: #555; font-size: 12px; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f5f5f5; padding: 1px 4px; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _num(value, fmt="{:.3g}", unit="") -> str:
    if value is None:
        return '<span class="absent">absent</span>'
    return fmt.format(value) + unit


def _ms(seconds) -> str:
    return _num(None if seconds is None else seconds * 1e3, "{:.2f}")


def _table(headers, rows, left=1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


# --- plots ------------------------------------------------------------------------


def plot_kernel_speedups(kernels: dict, plt):
    rows = [r for r in kernels.get("results", []) if r.get("backend") == "numpy"]
    if not rows:
        return None
    ops = kernels["ops"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(ops) + 1.6), sharey=True)
    for ax, size in zip(axes, ("slice", "volume")):
        by_op = {r["op"]: r for r in rows if r["size"] == size}
        y = range(len(ops))
        for offset, (name, color) in enumerate((("scipy", "#1f77b4"),
                                                ("simpleitk", "#ff7f0e"),
                                                ("opencv", "#2ca02c"))):
            values = [by_op.get(op, {}).get("baselines", {}).get(name, {}).get("ratio")
                      for op in ops]
            ax.barh([i + (offset - 1) * 0.27 for i in y], [v or 0 for v in values],
                    height=0.26, color=color, label=f"vs {name}")
        ax.axvline(1.0, color="#444", lw=0.8)
        if size == "volume":
            ax.axvline(10.0, color="#b3261e", ls="--", lw=1, label="10x target")
        ax.set_xscale("log")
        ax.set_yticks(list(y))
        ax.set_yticklabels(ops)
        shape = "x".join(map(str, kernels[f"{size}_shape"]))
        ax.set_title(f"{size} {shape}")
        ax.set_xlabel("baseline time / our time (log)")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0].invert_yaxis()  # shared: the first operation on top in both
    fig.suptitle("speed-up of medcompute's CPU path (baseline time / our time)")
    axes[1].legend(loc="lower right", fontsize=8)
    return fig


def plot_throughput(tp: dict, plt):
    levels = [lv for lv in tp.get("levels", []) if "images_per_s" in lv]
    if not levels:
        return None
    c = [lv["concurrency"] for lv in levels]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(c, [lv["images_per_s"] for lv in levels], "o-", label="service (gRPC + Dask)")
    scipy = tp["scipy_loop"]["images_per_s"]
    ax.axhline(scipy, color="#777", ls=":", label="in-process scipy loop")
    ax.axhline(2 * scipy, color="#b3261e", ls="--", label="2x scipy loop (target)")
    ax.axhline(tp["kernel_loop"]["images_per_s"], color="#2ca02c", ls="-.",
               label="in-process medcompute kernel loop")
    ax.set_xscale("log", base=2)
    ax.set_xticks(c)
    ax.set_xticklabels([str(v) for v in c])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("images / s")
    ax.set_title("throughput, " + "x".join(map(str, tp["shape"])) + " images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_latency(tp: dict, plt):
    levels = [lv for lv in tp.get("levels", []) if "p50_ms" in lv]
    if not levels:
        return None
    c = [lv["concurrency"] for lv in levels]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for q in ("p50", "p95", "p99"):
        ax.plot(c, [lv[f"{q}_ms"] for lv in levels], "o-", label=q)
    ax.axhline(50, color="#b3261e", ls="--", label="50 ms (p99 target at 8)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(c)
    ax.set_xticklabels([str(v) for v in c])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("latency per image (ms)")
    ax.set_title("latency percentiles")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_service(service: dict, plt):
    if not service.get("service"):
        return None
    names = ["service end to end", "in-process kernel", "raw echo (same bytes)",
             "budget: kernel + 1.3 echo", "in-process scipy.ndimage"]
    values = [service["service"]["seconds"], service["inprocess_kernel"]["seconds"],
              service["echo"]["seconds"], service["budget_seconds"],
              service["inprocess_scipy"]["seconds"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.barh(names, values, color=["#1f77b4", "#2ca02c", "#9467bd", "#b3261e", "#777"])
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("the volume end to end, " + "x".join(map(str, service["shape"])) + " int16")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_gpu(gpu: dict, plt):
    rows = [r for r in gpu.get("results", []) if r["size"] == "volume"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(rows) + 1.5))
    ax.barh([r["op"] for r in rows], [r["speedup_vs_cpu"] or 0 for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("CPU time / GPU time (log)")
    ax.set_title(f"GPU ({gpu.get('device')}) against CPU, volume")
    ax.grid(axis="x", which="both", alpha=0.3)
    return fig


# --- sections -------------------------------------------------------------------


def _targets(results) -> str:
    rows = []
    for t in results.get("targets", []):
        cls, word = {True: ("met", "met"), False: ("missed", "missed"),
                     None: ("absent", "not measured")}[t["met"]]
        rows.append([_e(t["what"]), _e(t["target"]),
                     _num(t["value"], "{:.3g}", _e(t["unit"])),
                     f'<span class="{cls}">{word}</span>', f'<span class="note">'
                     f'{_e(t["note"])}</span>'])
    return _table(["figure", "target", "value", "", "note"], rows)


def _kernels(kernels) -> str:
    if not kernels.get("results"):
        return f'<p class="absent">{_e(kernels.get("reason", "not measured"))}</p>'
    rows = []
    for r in kernels["results"]:
        b = r["baselines"]

        def cell(name, b=b):
            x = b.get(name, {})
            if x.get("seconds") is None:
                return f'<span class="absent" title="{_e(x.get("reason", ""))}">absent</span>'
            return f'{x["seconds"] * 1e3:.2f} ms / <b>{x["ratio"]:.1f}x</b>'

        rows.append([_e(r["op"]), _e(r["params"]), _e(r["size"]), _ms(r["seconds"]),
                     f'{r["mvox_per_s"]:.0f}', cell("scipy"), cell("simpleitk"),
                     cell("opencv"), _num(r["timing"].get("background_cores"), "{:.2f}")])
    return _table(["operation", "parameters", "size", "ours (ms)", "Mvox/s",
                   "scipy.ndimage / NumPy", "SimpleITK", "OpenCV", "other processes "
                   "(cores)"], rows, left=3)


def _service(service, store) -> str:
    if not service.get("service"):
        return f'<p class="absent">{_e(service.get("reason", "not measured"))}</p>'
    s = service
    rows = [["service end to end (Client.process, shared memory)",
             _ms(s["service"]["seconds"])],
            ["service end to end over gRPC chunks (shared_memory=False)",
             _ms((s.get("service_grpc") or {}).get("seconds"))],
            ["in-process kernel (medcompute, same machine)", _ms(s["inprocess_kernel"]
                                                                 ["seconds"])],
            ["in-process scipy.ndimage", _ms(s["inprocess_scipy"]["seconds"])],
            ["raw gRPC streaming echo of the same bytes", _ms(s["echo"]["seconds"])],
            ["budget: kernel + 1.3 x echo", _ms(s["budget_seconds"])],
            ["service time beyond the kernel / echo time", _num(s["overhead_over_echo"])],
            ["worker compute seconds (usage record)",
             _num(s["service_facts"].get("compute_seconds"))],
            ["slabs / workers (result header)",
             f'{_e(s["service_facts"].get("slabs"))} / {_e(s["service_facts"].get("workers"))}']]
    text = _table(["", "ms"], rows)
    if store.get("available"):
        rows = [[way, f'{store[way]["mb_per_s"]:.0f}',
                 f'{store["echo_" + way]["mb_per_s"]:.0f}',
                 f'{store[way + "_fraction_of_echo"]:.0%}'] for way in ("upload", "download")]
        text += "<h3>Store transport</h3>" + _table(
            ["", "store MB/s", "raw echo MB/s", "fraction"], rows)
    else:
        text += (f'<h3>Store transport</h3><p class="absent">absent: '
                 f'{_e(store.get("reason", "not measured"))}</p>')
    return text


def _throughput(tp) -> str:
    if not tp.get("levels"):
        return f'<p class="absent">{_e(tp.get("reason", "not measured"))}</p>'
    rows = []
    for lv in tp["levels"]:
        if "error" in lv:
            rows.append([str(lv["concurrency"]), str(lv["images"]),
                         f'<span class="missed">{_e(lv["error"])}</span>', "", "", "", ""])
            continue
        rows.append([str(lv["concurrency"]), str(lv["images"]), f'{lv["images_per_s"]:.1f}',
                     f'{lv["ratio_vs_scipy_loop"]:.2f}x', f'{lv["p50_ms"]:.1f}',
                     f'{lv["p95_ms"]:.1f}', f'{lv["p99_ms"]:.1f}'])
    text = _table(["clients", "images", "images/s", "vs scipy loop", "p50 ms", "p95 ms",
                   "p99 ms"], rows)
    text += (f'<p>In-process scipy.ndimage loop: {tp["scipy_loop"]["images_per_s"]:.1f} '
             f'images/s; in-process medcompute kernel loop: '
             f'{tp["kernel_loop"]["images_per_s"]:.1f} images/s.</p>')
    splits = [(f'{lv["concurrency"]} clients', lv.get("cpu_per_image"))
              for lv in tp["levels"] if lv.get("cpu_per_image")]
    batched = tp.get("batch") or {}
    if batched.get("cpu_per_image"):
        splits.append((f'batch of {batched["images"]}', batched["cpu_per_image"]))
    shared = tp.get("batch_shared_memory") or {}
    if shared.get("cpu_per_image"):
        splits.append((f'batch of {shared["images"]} over shared memory',
                       shared["cpu_per_image"]))
    if splits:
        text += ("<p>CPU per image, by process (ms), against what the level's target "
                 "leaves on this machine's cores:</p>" + _table(
                     ["run", "clients", "server", "workers", "total", "target leaves"],
                     [[name, f'{s["client_ms"]:.2f}', f'{s["server_ms"]:.2f}',
                       f'{s["workers_ms"]:.2f}', f'{s["total_ms"]:.2f}',
                       f'{s["allowed_ms_at_target"]:.2f}'] for name, s in splits]))
    ceiling = tp.get("transport_ceiling")
    if ceiling:
        text += (f'<p>Transport ceiling: the raw gRPC echo of the batch\'s bytes runs at '
                 f'{ceiling["images_per_s"]:.1f} images/s '
                 f'({ceiling["ratio_vs_scipy_loop"]:.2f}x the scipy loop); the batch reached '
                 f'{batched.get("fraction_of_transport_ceiling", 0):.0%} of it.</p>')
    return text


def _scaling(sc) -> str:
    if sc.get("speedup") is None and "workers_1" not in sc:
        return f'<p class="absent">{_e(sc.get("reason", "not measured"))}</p>'
    rows = []
    for w in (1, 2):
        x = sc.get(f"workers_{w}") or {}
        rows.append([str(w), _ms(x.get("seconds")), _num(x.get("wall_seconds_median")),
                     _e(x.get("slabs")), _num(x.get("compute_seconds_median"))])
    return (_table(["workers", "end to end (ms)", "server wall s", "slabs",
                    "worker compute s (all slabs)"], rows)
            + f'<p>Speed-up from one worker to two on {"x".join(map(str, sc["shape"]))} '
              f'int16: <b>{_num(sc.get("speedup"))}x</b> end to end, '
              f'<b>{_num(sc.get("speedup_server_wall"))}x</b> in the server\'s wall time '
              f'for the job (without the transfers).</p>')


def _gpu(gpu) -> str:
    if not gpu.get("available"):
        return f'<p class="absent">absent: {_e(gpu.get("reason", "not measured"))}</p>'
    rows = [[_e(r["op"]), _e(r["size"]), _ms(r["seconds"]), _ms(r["cpu_seconds"]),
             _num(r["speedup_vs_cpu"], "{:.1f}", "x"),
             f'{r["achieved_bytes_per_s"] / 1e9:.0f}', f'{r["bandwidth_fraction"]:.0%}']
            for r in gpu["results"]]
    return (f'<p>{_e(gpu["device"])}, peak memory bandwidth '
            f'{gpu["peak_bytes_per_s"] / 1e9:.0f} GB/s.</p>'
            + _table(["operation", "size", "GPU ms", "CPU ms", "speed-up", "GB/s",
                      "of peak"], rows, left=2))


def _versions(v) -> str:
    if not v or v.get("available") is False:
        return f'<p class="absent">{_e((v or {}).get("reason", "not run"))}</p>'
    o = v.get("original", {})
    rows = [["original", "-", _num(o.get("bytes"), "{:.0f}"), "1", "0", "-", "-",
             _ms((o.get("decode") or {}).get("seconds")), "1"]]
    for r in v.get("versions", []):
        rows.append([_e(r["name"]), _e(r["purpose"]), _num(r["bytes"], "{:.0f}"),
                     _num(r["ratio"], "{:.1f}"), _num(r["max_error"], "{:g}"),
                     _num(r.get("psnr_db"), "{:.1f}"), _ms(r["encode"]["seconds"]),
                     _ms(r["decode"]["seconds"]), _num(r.get("decode_vs_original"), "{:.2f}")])
    table = _table(["version", "purpose", "bytes", "ratio", "max error", "PSNR dB",
                    "encode", "decode", "decode speed vs original"], rows)
    levels = _table(["resolution level", "bytes"],
                    [[str(lv["level"]), _num(lv["bytes"], "{:.0f}")]
                     for lv in v.get("resolution_levels", [])])
    t = v.get("tiers", {})
    tiers = _table(["read", "seconds"], [
        ["hot (page cache)", _ms((t.get("hot_read") or {}).get("seconds"))],
        ["cold (from the medium)", _ms((t.get("cold_read") or {}).get("seconds"))],
        ["cold / hot", _num(t.get("cold_vs_hot"), "{:.2f}")]])
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in v.get("notes", []))
    return (f"<p>{_e('x'.join(str(n) for n in v.get('shape', [])))} volume, "
            f"{_e(v.get('files'))} files</p>" + table + levels + tiers + notes)


def _dicom(d) -> str:
    if not d or d.get("available") is False:
        return f'<p class="absent">{_e((d or {}).get("reason", "not run"))}</p>'
    rows = [["dcmtk storescp (baseline, faster of two)", _num(d.get("storescp_instances_per_s"),
                                                              "{:.1f}"), "-"],
            ["medcompute (stored, fsynced, grouped)",
             _num(d.get("service_instances_per_s"), "{:.1f}"),
             _num(d.get("service_over_storescp"), "{:.2f}")]]
    return (f"<p>storescu of {_e(d.get('slices'))} CT slices of {_e(d.get('size'))}^2 int16, "
            "one association</p>" + _table(["receiver", "instances/s", "vs storescp"], rows)
            + f"<p>last slice acknowledged to the derived series (a routed Gaussian, pushed "
            f"by C-STORE) arrived at a storescp: "
            f"{_num(d.get('last_slice_to_derived_series_arrived_s'), '{:.2f}')} s</p>")


def _catalog(c) -> str:
    if not c or c.get("available") is False:
        return f'<p class="absent">{_e((c or {}).get("reason", "not run"))}</p>'
    rows = []
    for name, label, ratio in (("sqlite", "SQLite (baseline)", 1.0),
                               ("postgresql", "PostgreSQL, one front end",
                                c.get("postgresql_vs_sqlite")),
                               ("postgresql_two_front_ends", "PostgreSQL, two front ends",
                                None)):
        r = c.get(name) or {}
        rows.append([_e(label), _num(r.get("jobs_per_s"), "{:.0f}"),
                     _num(r.get("call_median_ms"), "{:.2f}"), _num(r.get("call_p95_ms"),
                                                                   "{:.2f}"),
                     _num(r.get("writes_per_commit"), "{:.1f}"), _num(ratio, "{:.2f}")])
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in c.get("notes", []))
    return (f"<p>{_e(c.get('jobs'))} jobs' bookkeeping (4 durable writes each) per front "
            f"end, {_e(c.get('clients_per_front_end'))} concurrent writers each; two front "
            f"ends against one: {_num(c.get('two_front_ends_vs_one'), '{:.2f}')}x</p>"
            + _table(["catalog", "jobs/s", "call median ms", "call p95 ms",
                      "writes per commit", "vs SQLite"], rows) + notes)


def _dicomweb(d) -> str:
    if not d or d.get("available") is False:
        return f'<p class="absent">{_e((d or {}).get("reason", "not run"))}</p>'
    w, q = d.get("wado", {}), d.get("qido", {})
    wado = _table(["retrieval", "MB/s", "vs Store.Get"], [
        ["gRPC Store.Get (baseline)", _num(w.get("grpc_get_mb_per_s"), "{:.0f}"), "1"],
        ["WADO-RS series", _num(w.get("wado_mb_per_s"), "{:.0f}"),
         _num(w.get("wado_over_grpc"), "{:.2f}")]])
    rows = [[_e(name), _num(v.get("results"), "{:.0f}"), _ms(v.get("grpc_find_seconds")),
             _ms(v.get("qido_seconds")), _ms(v.get("cold_seconds")),
             _ms(v.get("cold_after_restart_seconds")),
             _num(v.get("restart_cold_over_cold"), "{:.2f}"),
             _num(v.get("qido_over_grpc"), "{:.1f}")]
            for name, v in (q.get("latency") or {}).items()]
    return (f"<p>WADO-RS of a {_e(w.get('slices'))}-slice 512x512 CT series against "
            "Store.Get of its DICOM files</p>" + wado
            + f"<p>QIDO-RS with {_e(q.get('instances'))} instances stored, against "
            "Store.Find with the same filter</p>"
            + _table(["query", "results", "Store.Find", "QIDO-RS", "QIDO-RS cold",
                      "cold after a restart (catalog)", "restart / cold", "QIDO / Find"],
                     rows))


def render(results: dict) -> str:
    plt = _pyplot()
    meta = results.get("meta", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>medcompute "
             f"benchmarks</title><style>{_STYLE}</style></head><body>",
             "<h1>medcompute benchmarks</h1>"]
    m = meta.get("machine", {})
    parts.append(
        f'<p>{_e(meta.get("mode"))} run, {_e(meta.get("started"))}, '
        f'{_e(meta.get("duration_seconds"))} s; {_e(m.get("cpu"))}, {_e(m.get("cores"))} '
        f'cores, {_e(m.get("memory_gib"))} GiB; commit {_e(m.get("commit"))}.<br>'
        f'<code>{_e(meta.get("command"))}</code><br><span class="note">Other processes kept '
        f'{_num((meta.get("background_before") or {}).get("busy_fraction"), "{:.0%}")} of the '
        f'cores busy before the run and '
        f'{_num((meta.get("background_after") or {}).get("busy_fraction"), "{:.0%}")} after '
        f'it. Every figure is a ratio against a baseline measured in this run; absent '
        f'figures could not be measured here.</span></p>')
    for note in (meta.get("sizes") or {}).get("notes", []):
        parts.append(f'<p class="note">{_e(note)}</p>')
    parts.append("<h2>Targets</h2>" + _targets(results))

    def figure(fn, data):
        if plt is None:
            return '<p class="absent">plots need matplotlib (the "bench" extra)</p>'
        fig = fn(data, plt)
        return _png(fig) if fig is not None else ""

    kernels = results.get("kernels", {})
    parts.append("<h2>Kernels</h2>" + figure(plot_kernel_speedups, kernels) + _kernels(kernels))
    for note in kernels.get("notes", []):
        parts.append(f'<p class="note">{_e(note)}</p>')
    service = results.get("service", {})
    parts.append("<h2>Service</h2>" + figure(plot_service, service)
                 + _service(service, results.get("store", {})))
    tp = results.get("throughput", {})
    parts.append("<h2>Throughput and latency</h2>" + figure(plot_throughput, tp)
                 + figure(plot_latency, tp) + _throughput(tp))
    parts.append("<h2>Scaling</h2>" + _scaling(results.get("scaling", {})))
    gpu = results.get("gpu", {})
    parts.append("<h2>GPU</h2>" + figure(plot_gpu, gpu) + _gpu(gpu))
    parts.append("<h2>Stored versions and tiers</h2>" + _versions(results.get("versions")))
    parts.append("<h2>DICOM ingest</h2>" + _dicom(results.get("dicom")))
    parts.append("<h2>Catalog</h2>" + _catalog(results.get("catalog")))
    parts.append("<h2>DICOMweb</h2>" + _dicomweb(results.get("dicomweb")))
    versions = m.get("versions", {})
    parts.append("<h2>Software</h2>" + _table(["package", "version"],
                                               [[_e(k), _e(v)] for k, v in versions.items()]))
    parts.append("</body></html>")
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text())
    out = args.output or args.json.with_suffix(".html")
    out.write_text(render(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
