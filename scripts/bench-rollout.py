#!/usr/bin/env python3
"""Rollouts under load (issue 15, scenarios 3-5), with `lrai bench` as the client.

Starts `lrai serve` on a temporary copy of examples/models/digits_mlp, measures its
capacity (closed loop, 4 clients), then drives an open loop at 60% of it while:

  3. a canary to a candidate with permuted logits runs: it must roll back at its first
     step, with 0 failed requests and the candidate's share <= the first step's weight;
  4. a canary to a fine candidate runs: it must be promoted with 0 failed requests;
  5. a shadow rollout (sample rate 1.0) runs: >= 95% of requests compared, and the
     baseline's p99 compared with the same load without shadow.

While each runs, GET .../rollout is sampled every 100 ms. Writes DIR/report.json,
DIR/canary-*.csv and, when matplotlib is installed, DIR/canary-fine.png and
DIR/canary-broken.png (traffic share and latency over time).

Run: python3 scripts/bench-rollout.py [--lrai target/release/lrai] [--out DIR]
(the plots need matplotlib: `.venv/bin/pip install matplotlib`; the test suite doesn't).
Needs the fixtures of scripts/make-rollout-fixtures.py (committed).
"""
import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTTP, GRPC, METRICS = 18720, 18721, 18722
BASE = f"http://127.0.0.1:{HTTP}"
ROLLOUT = f"{BASE}/v2/repository/models/digits_mlp/rollout"


def request(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def skipped():
    """lrai_rollout_mirrors_skipped_total for digits_mlp."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("lrai_rollout_mirrors_skipped_total{"):
                return float(line.split()[-1])
    return 0.0


def add_version(repo, version, model):
    d = repo / "digits_mlp" / str(version)
    d.mkdir(parents=True)
    shutil.copy(model, d / "model.onnx")


def bench(lrai, out, name, args):
    """Runs `lrai bench` and returns its JSON summary of the single level."""
    js = out / f"{name}.json"
    raw = out / f"{name}-raw.csv"
    cmd = [str(lrai), "bench", "-q", "-m", "digits_mlp", "-u", BASE, "--warmup", "1",
           "--json", str(js), "--raw-csv", str(raw), *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(js.read_text())["levels"][0]["summary"]


class Sampler(threading.Thread):
    """Polls the rollout status every 100 ms until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.rows, self.stop = [], threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            status, st = request("GET", ROLLOUT)
            if status == 200:
                self.rows.append({"t_s": time.monotonic() - self.t0, "state": st["state"],
                                  "weight": st["weight"],
                                  "baseline": st["requests"]["baseline"],
                                  "candidate": st["requests"]["candidate"],
                                  "compared": st["compared"]})
            time.sleep(0.1)


def run_rollout(lrai, out, name, spec, rate, duration, start_after=2.0):
    """Starts the rollout `start_after` s into a bench run; returns (summary, samples, final)."""
    sampler = Sampler()
    result = {}

    def load():
        result["summary"] = bench(lrai, out, name, ["--rate", str(rate), "--duration", str(duration)])

    t = threading.Thread(target=load)
    t.start()
    time.sleep(start_after)
    sampler.t0 = time.monotonic()
    sampler.start()
    status, body = request("POST", ROLLOUT, spec)
    if status != 200:
        sys.exit(f"rollout refused: {status} {body}")
    t.join()
    time.sleep(0.5)
    sampler.stop.set()
    sampler.join()
    _, final = request("GET", ROLLOUT)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["t_s", "state", "weight", "baseline", "candidate", "compared"])
        w.writeheader()
        w.writerows(sampler.rows)
    return result["summary"], sampler.rows, final


def plot(out, name, rows, start_after, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    raw = list(csv.DictReader(open(out / f"{name}-raw.csv")))
    fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    ts, share, weight = [], [], []
    for prev, cur in zip(rows, rows[1:]):
        db = cur["baseline"] - prev["baseline"]
        dc = cur["candidate"] - prev["candidate"]
        if db + dc > 0:
            ts.append(cur["t_s"])
            share.append(100.0 * dc / (db + dc))
            weight.append(cur["weight"])
    a1.plot(ts, share, ".", ms=3, label="answered by the candidate (per 100 ms)")
    a1.step([r["t_s"] for r in rows], [r["weight"] for r in rows], where="post", label="weight")
    a1.set_ylabel("candidate share, %")
    a1.set_ylim(-5, 105)
    a1.legend(loc="center right")
    # Raw latencies are timed from the bench start; the rollout began start_after + warm-up.
    t = [float(r["t_send_ms"]) / 1000 - start_after for r in raw if r["ok"] == "1"]
    lat = [float(r["latency_ms"]) for r in raw if r["ok"] == "1"]
    a2.plot(t, lat, ",", alpha=0.5)
    a2.set_yscale("log")
    a2.set_ylabel("latency, ms (each request)")
    a2.set_xlabel("seconds since the rollout started")
    a1.set_title(title)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lrai", default=str(ROOT / "target/release/lrai"))
    ap.add_argument("--out", default="rollout-bench")
    ap.add_argument("--duration", type=float, default=12)
    ap.add_argument("--fraction", type=float, default=0.6, help="open-loop rate as a share of capacity")
    ap.add_argument("--shadow-fraction", type=float, default=None,
                    help="rate for the shadow scenario as a share of capacity (default --fraction); "
                         "shadow at sample rate 1.0 runs every request twice")
    ap.add_argument("--capacity-concurrency", default="4",
                    help="closed-loop clients when measuring capacity (the generator shares the CPU)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fixtures = ROOT / "tests/fixtures/rollout"
    repo = Path(tempfile.mkdtemp(prefix="lrai-rollout-bench-"))
    shutil.copytree(ROOT / "examples/models/digits_mlp", repo / "digits_mlp")
    server = subprocess.Popen(
        [args.lrai, "serve", "--model-repository", str(repo), "--backend", "tract",
         "--model-control-mode", "explicit", "--address", "127.0.0.1", "--http-port", str(HTTP),
         "--grpc-port", str(GRPC), "--metrics-port", str(METRICS), "--log-level", "warn"],
        stderr=open(out / "server.log", "w"))
    try:
        for _ in range(300):
            try:
                if request("GET", f"{BASE}/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        report = scenarios(args, out, repo, fixtures)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(repo, ignore_errors=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def scenarios(args, out, repo, fixtures):
    cap = bench(args.lrai, out, "capacity",
                ["--concurrency", args.capacity_concurrency, "--duration", "5"])
    rate = round(args.fraction * cap["throughput_rps"])
    window = max(100, rate)  # about a second of traffic per window
    report = {"capacity_rps": cap["throughput_rps"], "rate_rps": rate, "step_requests": window}
    gates = {"max_error_rate": 0.01, "max_p99_ratio": 2.0, "min_agreement": 0.99}

    add_version(repo, 2, fixtures / "digits_mlp_permuted.onnx")
    spec = {"candidate": "2", "mode": "canary", "steps": [10, 50, 100],
            "step_requests": window, "gates": gates}
    s, rows, final = run_rollout(args.lrai, out, "canary-broken", spec, rate, args.duration)
    c, b = final["requests"]["candidate"], final["requests"]["baseline"]
    report["3_broken_canary"] = {
        "state": final["state"], "step": final["step"], "reason": final["reason"],
        "errors": s["errors"], "candidate_share": c / max(1, b + c),
        "answered_by_candidate": c, "answered": b + c, "p99_ms": s["latency_ms"]["p99"]}
    plot(out, "canary-broken", rows, 2.0, "canary to permuted logits: rolled back")

    add_version(repo, 3, fixtures / "digits_mlp_fine.onnx")
    spec = {"candidate": "3", "mode": "canary", "steps": [10, 50, 100],
            "step_requests": window, "gates": gates}
    s, rows, final = run_rollout(args.lrai, out, "canary-fine", spec, rate, args.duration + 6)
    report["4_fine_canary"] = {"state": final["state"], "reason": final["reason"],
                               "errors": s["errors"], "p99_ms": s["latency_ms"]["p99"],
                               "gates": final["gates"]}
    plot(out, "canary-fine", rows, 2.0, "canary to a fine candidate: promoted")

    shadow_rate = round((args.shadow_fraction or args.fraction) * cap["throughput_rps"])
    report["shadow_rate_rps"] = shadow_rate
    off = bench(args.lrai, out, "shadow-off", ["--rate", str(shadow_rate), "--duration", str(args.duration)])
    add_version(repo, 4, fixtures / "digits_mlp_fine.onnx")
    spec = {"candidate": "4", "mode": "shadow", "sample_rate": 1.0, "step_requests": window}
    request("POST", ROLLOUT, spec)
    on = bench(args.lrai, out, "shadow-on", ["--rate", str(shadow_rate), "--duration", str(args.duration)])
    time.sleep(1)
    _, final = request("GET", ROLLOUT)
    request("DELETE", ROLLOUT)
    answered = final["requests"]["baseline"]
    report["5_shadow"] = {"state": final["state"], "answered": answered,
                          "compared": final["compared"],
                          "compared_share": final["compared"] / max(1, answered),
                          "errors": on["errors"], "p99_ms_shadow_off": off["latency_ms"]["p99"],
                          "p99_ms_shadow_on": on["latency_ms"]["p99"],
                          "p99_ratio": on["latency_ms"]["p99"] / off["latency_ms"]["p99"],
                          "mirrors_skipped": skipped()}
    return report


if __name__ == "__main__":
    main()
