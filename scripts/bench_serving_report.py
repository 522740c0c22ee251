#!/usr/bin/env python3
"""Summarises scripts/bench-serving.sh: every perf_analyzer level, LRAI against the
ceiling and the peers (ratios, same run), and mobilenet against Python onnxruntime
in-process at the batch size LRAI's batcher formed. Usage: bench_serving_report.py OUT_DIR"""
import csv
import glob
import json
import os
import sys

out = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "raw", "*.csv"))):
    tag, model, proto, c = os.path.basename(f)[:-4].split("__")
    for r in csv.DictReader(open(f)):
        rows[(tag, model, proto, int(r["Concurrency"]))] = dict(
            ips=float(r["Inferences/Second"]), p50=int(r["p50 latency"]) / 1000,
            p95=int(r["p95 latency"]) / 1000, p99=int(r["p99 latency"]) / 1000)

md = ["## All levels", "", "| model | server | proto | conc | infer/s | p50 ms | p95 ms | p99 ms |",
      "|---|---|---|---:|---:|---:|---:|---:|"]
for (tag, model, proto, c), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2], kv[0][3])):
    md.append(f"| {model} | {tag} | {proto} | {c} | {r['ips']:.1f} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} |")

def get(tag, model, proto, c):
    return rows.get((tag, model, proto, c))

md += ["", "## digits_mlp: LRAI against the ceiling (HTTP JSON, same run)", "",
       "| conc | LRAI infer/s | ceiling infer/s | fraction |", "|---:|---:|---:|---:|"]
for c in (1, 4, 16, 64):
    a, b = get("lrai", "digits_mlp", "http", c), get("ceiling", "digits_mlp", "http", c)
    if a and b:
        md.append(f"| {c} | {a['ips']:.0f} | {b['ips']:.0f} | {a['ips'] / b['ips']:.2f} |")

peers = sorted({t for (t, m, p, c) in rows if t not in ("lrai", "lrai-binary", "ceiling")})
md += ["", "## digits_mlp: LRAI against each peer (throughput ratio, p99 LRAI vs peer)", "",
       "| proto | conc | peer | LRAI infer/s | peer infer/s | ratio | LRAI p99 ms | peer p99 ms |",
       "|---|---:|---|---:|---:|---:|---:|---:|"]
for proto in ("http", "grpc"):
    for c in (1, 4, 16, 64):
        a = get("lrai", "digits_mlp", proto, c)
        for p in peers:
            b = get(p, "digits_mlp", proto, c)
            if a and b:
                md.append(f"| {proto} | {c} | {p} | {a['ips']:.0f} | {b['ips']:.0f} | {a['ips'] / b['ips']:.1f}x | {a['p99']:.2f} | {b['p99']:.2f} |")

stats_path = os.path.join(out, "lrai_mobilenet_stats.json")
inproc = os.path.join(out, "inproc__mobilenet_v2.json")
if os.path.exists(stats_path):
    s = json.load(open(stats_path))["model_stats"][0]
    bs = s.get("batch_stats", [])
    n = sum(b["compute_infer"]["count"] for b in bs)
    avg = sum(b["batch_size"] * b["compute_infer"]["count"] for b in bs) / n if n else 0
    md += ["", f"## mobilenet_v2 at saturation", "",
           f"LRAI batches formed: {', '.join(str(b['batch_size']) + '×' + str(b['compute_infer']['count']) for b in bs)} (mean {avg:.1f} rows)."]
    best = max((r for (t, m, p, c), r in rows.items() if t.startswith("lrai") and m == "mobilenet_v2"),
               key=lambda r: r["ips"], default=None)
    if best and os.path.exists(inproc):
        ip = json.load(open(inproc))
        ref = min(ip, key=lambda r: abs(r["batch"] - avg))
        md.append(f"Best LRAI mobilenet throughput {best['ips']:.1f} infer/s; Python onnxruntime in-process at batch "
                  f"{ref['batch']}: {ref['infer_per_s']} infer/s; fraction {best['ips'] / ref['infer_per_s']:.2f}.")
import re
prof = []
for c in (1, 64):
    a_p, b_p = (os.path.join(out, f"profile_c{c}_{w}.json") for w in ("before", "after"))
    log = os.path.join(out, "raw", f"profile__digits_mlp__http__c{c}.log")
    if not (os.path.exists(a_p) and os.path.exists(b_p) and os.path.exists(log)):
        continue
    a, b = (json.load(open(f))["model_stats"][0] for f in (a_p, b_p))
    n = b["inference_count"] - a["inference_count"]
    e = b["execution_count"] - a["execution_count"]
    if n <= 0:
        continue
    us = lambda k: (b["inference_stats"][k]["ns"] - a["inference_stats"][k]["ns"]) / n / 1e3
    text = open(log).read()
    p50 = re.search(r"p50 latency: (\d+) usec", text)
    client = float(p50.group(1)) if p50 else float("nan")
    server = us("success")
    compute = us("compute_input") + us("compute_infer") + us("compute_output")
    prof.append(f"| {c} | {client:.0f} | {server:.0f} | {us('queue'):.0f} | {compute:.0f} | "
                f"{server - us('queue') - compute:.0f} | {n / max(e, 1):.1f} |")
if prof:
    md += ["", "## digits_mlp: where the time goes (HTTP JSON, per request, µs)", "",
           "Client p50 is perf_analyzer's; the rest is the server's own statistics over the same window. "
           "Server 'protocol' = request handling outside the queue and the backend (HTTP, JSON, tensor "
           "conversion, waiting for a core); client minus server = network stack and perf_analyzer.", "",
           "| conc | client p50 | server total (mean) | queue | backend compute | server protocol | rows/batch |",
           "|---:|---:|---:|---:|---:|---:|---:|"] + prof
print("\n".join(md))
