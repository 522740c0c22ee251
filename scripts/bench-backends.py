#!/usr/bin/env python3
"""Backend benchmark (issue 3): LRAI's tract and ONNX Runtime backends against Python
onnxruntime on the same inputs, 2 intra-op threads, median of >= 20 runs after warm-up.

Passes alternate (python, LRAI, python, LRAI) and each case keeps the best median of
its passes, because the machine is noisy. LRAI's side runs in one process
(crates/lrai-backend/benches/backends.rs). Prints a table of inferences/s and the
ratio LRAI / Python onnxruntime; writes JSON with --out.

Usage: .venv/bin/python scripts/bench-backends.py [--shared ../shared/models] [--passes 2] [--only minilm] [--out bench.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent


def cases(shared: Path):
    ex = ROOT / "examples" / "models"
    rng = np.random.default_rng(0)
    out = []
    for b, runs in ((1, 2000), (64, 2000)):
        out.append(("digits_mlp", ex / "digits_mlp/1/model.onnx", b, runs,
                    {"input": rng.random((b, 64), dtype=np.float32)}))
    for b, runs in ((1, 40), (8, 20)):
        out.append(("mobilenet_v2", ex / "mobilenet_v2/1/model.onnx", b, runs,
                    {"input": rng.standard_normal((b, 3, 224, 224), dtype=np.float32)}))
    minilm = shared / "minilm_l6.onnx"
    if minilm.is_file():
        for b, runs in ((1, 30), (8, 20)):
            ids = rng.integers(1000, 30000, size=(b, 128), dtype=np.int64)
            ids[:, 0] = 101
            ids[:, -1] = 102
            out.append(("minilm_l6_s128", minilm, b, runs,
                        {"input_ids": ids, "attention_mask": np.ones((b, 128), np.int64),
                         "token_type_ids": np.zeros((b, 128), np.int64)}))
    else:
        print(f"minilm skipped: {minilm} absent", file=sys.stderr)
    return out


def time_python(model, feeds, runs, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        s.run(None, feeds)
    t = []
    for _ in range(runs):
        a = time.perf_counter()
        s.run(None, feeds)
        t.append((time.perf_counter() - a) * 1e3)
    return float(np.median(t))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "models"))
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="run only the cases whose name contains this (e.g. minilm)")
    ap.add_argument("--out")
    args = ap.parse_args()
    ort_lib = next(Path(ort.__file__).parent.glob("capi/libonnxruntime.so.*"))
    work = Path(tempfile.mkdtemp(prefix="lrai-bench-"))
    plan = {"threads": args.threads, "ort_lib": str(ort_lib), "cases": []}
    todo = [c for c in cases(Path(args.shared)) if not args.only or args.only in c[0]]
    for name, model, b, runs, feeds in todo:
        npz = work / f"{name}_b{b}.npz"
        np.savez(npz, **feeds)
        plan["cases"].append({"name": f"{name} b{b}", "model": str(model), "inputs": str(npz),
                              "batch": b, "runs": runs, "warmup": 3})
    (work / "plan.json").write_text(json.dumps(plan))
    print("building the bench binary (release)...", file=sys.stderr)
    subprocess.run(["cargo", "bench", "-p", "lrai-backend", "--bench", "backends", "--no-run", "-q"],
                   cwd=ROOT, check=True)
    best = {}
    for p in range(args.passes):
        for name, model, b, runs, feeds in todo:
            key = (f"{name} b{b}", "python-onnxruntime")
            ms = time_python(model, feeds, runs, args.threads)
            best[key] = min(best.get(key, ms), ms)
            print(f"pass {p + 1} {key[0]} python: {ms:.3f} ms", file=sys.stderr)
        r = subprocess.run(["cargo", "bench", "-q", "-p", "lrai-backend", "--bench", "backends", "--",
                            str(work / "plan.json")], cwd=ROOT, check=True, capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                key = (d["case"], "lrai-" + d["backend"])
                best[key] = min(best.get(key, d["median_ms"]), d["median_ms"])
                print(f"pass {p + 1} {key[0]} {key[1]}: {d['median_ms']:.3f} ms", file=sys.stderr)
    rows = []
    print(f"\n{'case':<22} {'backend':<20} {'median ms':>10} {'inf/s':>10} {'vs python ORT':>14}")
    for name, model, b, runs, feeds in todo:
        case = f"{name} b{b}"
        py = best[(case, "python-onnxruntime")]
        for backend in ("python-onnxruntime", "lrai-onnxruntime", "lrai-tract"):
            ms = best[(case, backend)]
            ratio = py / ms  # throughput ratio LRAI / python
            rows.append({"case": case, "backend": backend, "median_ms": ms, "inferences_per_s": b * 1e3 / ms,
                         "throughput_vs_python_ort": ratio})
            print(f"{case:<22} {backend:<20} {ms:>10.3f} {b * 1e3 / ms:>10.1f} {ratio:>13.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "passes": args.passes,
                                              "cpu": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
