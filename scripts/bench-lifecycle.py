#!/usr/bin/env python3
"""Issue 15's load scenarios 1 and 2: version swaps and a rollback under open-loop load.

One `lrai serve` per mode on a temporary repository holding one model (default
examples/models/digits_cnn; every version is a copy of its model file), `lrai bench` in
the background at 60% of the capacity measured first (closed loop, 4 clients), and:

  poll      20 swaps by files: version k+1 is written (built as staging-N, renamed) and
            the poller (--repository-poll-secs 1) loads it; each swap ends when the new
            version answers unversioned requests
  api       20 swaps through the API: version k+1 written, then POST .../load
  rollback  one POST .../rollback while the load runs (explicit mode)

Reported per run: requests, failed requests (any server or transport error; requests the
generator itself dropped at its in-flight cap are counted apart), p99 over the whole run,
p99 of the requests sent during swaps (from each swap's start to 0.5 s after it ended;
times aligned to the bench's start within a few tens of ms), p99 of the same run's other
requests, and the p99 of a run at the same rate without swaps. Writes a markdown report to $OUT/report.md (default out/bench-lifecycle).

Usage: scripts/bench-lifecycle.py [--model digits_cnn] [--swaps 20] [--protocol http]
Needs a release build (target/release/lrai) or LRAI_BIN.
"""
import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LRAI = Path(os.environ.get("LRAI_BIN", ROOT / "target" / "release" / "lrai"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, timeout: float = 30.0) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Server:
    def __init__(self, repo: Path, mode: str, log: Path, backend: list[str]):
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        args = [str(LRAI), "serve", "--model-repository", str(repo), "--address", "127.0.0.1",
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--metrics-port", str(self.metrics_port), "--model-control-mode", mode,
                "--repository-poll-secs", "1", *backend]
        self.proc = subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.base = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if http("GET", f"{self.base}/v2/health/ready", 2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not become ready; see {log}")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def bench(srv: Server, args, extra: list[str], out: Path) -> subprocess.Popen:
    cmd = [str(LRAI), "bench", "-m", args.model, "--url", f"127.0.0.1:{srv.http_port}",
           "--protocol", args.protocol, "--quiet", "--json", str(out.with_suffix(".json")),
           "--raw-csv", str(out.with_suffix(".csv")), *extra]
    if args.protocol == "grpc":
        cmd[cmd.index("--url") + 1] = f"127.0.0.1:{srv.grpc_port}"
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(out.with_suffix(".log"), "wb"))


def capacity(srv: Server, args, out: Path) -> float:
    p = bench(srv, args, ["--concurrency", "4", "--duration", "5"], out / "capacity")
    p.wait()
    report = json.loads((out / "capacity.json").read_text())
    return report["levels"][0]["summary"]["throughput_rps"]


def add_version(repo: Path, model: str, version: int, source: Path) -> None:
    staging = repo / model / f"staging-{version}"
    staging.mkdir(parents=True)
    shutil.copy(source, staging / "model.onnx")
    staging.rename(repo / model / str(version))


def answers_version(srv: Server, model: str, version: int) -> bool:
    st, body = http("GET", f"{srv.base}/v2/models/{model}/versions/{version}/ready")
    if st != 200:
        return False
    idx = json.loads(http("POST", f"{srv.base}/v2/repository/index")[1])
    return [e.get("version") for e in idx if e["name"] == model and e["state"] == "READY"] == [str(version)]


def samples(path: Path) -> list[tuple[float, float, bool, str]]:
    with open(path) as f:
        return [(float(r["t_send_ms"]) / 1e3, float(r["latency_ms"]), r["ok"] == "1", r["error"])
                for r in csv.DictReader(f)]


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(0.99 * len(v)))]


def swap_run(srv: Server, repo: Path, args, rate: float, how: str, out: Path, source: Path) -> dict:
    duration = args.swaps * 3 + 10
    started = time.monotonic()
    p = bench(srv, args, ["--rate", f"{rate:.1f}", "--duration", str(duration), "--warmup", "1"], out / how)
    time.sleep(3)
    windows, version = [], 1
    for _ in range(args.swaps):
        version += 1
        t0 = time.monotonic() - started
        add_version(repo, args.model, version, source)
        if how == "api":
            st, body = http("POST", f"{srv.base}/v2/repository/models/{args.model}/load", 120)
            assert st == 200, body
        deadline = time.monotonic() + 60
        while not answers_version(srv, args.model, version):
            assert time.monotonic() < deadline, f"version {version} never took over"
            time.sleep(0.05)
        windows.append((t0, time.monotonic() - started + 0.5))
        time.sleep(1.0)
    p.wait()
    return summarize(out / how, windows)


def rollback_run(srv: Server, repo: Path, args, rate: float, out: Path, source: Path) -> dict:
    add_version(repo, args.model, 2, source)
    st, body = http("POST", f"{srv.base}/v2/repository/models/{args.model}/load", 120)
    assert st == 200, body
    started = time.monotonic()
    p = bench(srv, args, ["--rate", f"{rate:.1f}", "--duration", "15", "--warmup", "1"], out / "rollback")
    time.sleep(6)
    t0 = time.monotonic() - started
    st, body = http("POST", f"{srv.base}/v2/repository/models/{args.model}/rollback", 120)
    assert st == 200, body
    windows = [(t0, time.monotonic() - started + 0.5)]
    p.wait()
    result = summarize(out / "rollback", windows)
    result["rollback"] = json.loads(body)
    return result


def summarize(stem: Path, windows: list[tuple[float, float]]) -> dict:
    rows = samples(stem.with_suffix(".csv"))
    # `dropped`: the generator's own in-flight cap was hit (no request was sent); counted
    # apart from requests the server failed.
    failed = [r for r in rows if not r[2] and r[3] != "dropped"]
    dropped = sum(1 for r in rows if r[3] == "dropped")
    inside = [any(a <= r[0] <= b for a, b in windows) for r in rows]
    during = [r[1] for r, i in zip(rows, inside) if i]
    # The same run's other requests (after the 1 s warm-up): a steady baseline measured
    # on the same machine at the same moment.
    outside = [r[1] for r, i in zip(rows, inside) if not i and r[0] >= 1.0]
    report = json.loads(stem.with_suffix(".json").read_text())["levels"][0]["summary"]
    return {"requests": len(rows), "failed": len(failed), "dropped_by_generator": dropped,
            "errors": sorted({r[3] for r in failed})[:5],
            "p99_ms": p99([r[1] for r in rows]), "p99_during_swaps_ms": p99(during),
            "p99_outside_swaps_ms": p99(outside),
            "requests_during_swaps": len(during), "throughput_rps": report["throughput_rps"],
            "swaps": len(windows), "windows_s": [[round(a, 3), round(b, 3)] for a, b in windows]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--swaps", type=int, default=20)
    ap.add_argument("--protocol", default="http", choices=["http", "grpc"])
    ap.add_argument("--load-factor", type=float, default=0.6)
    ap.add_argument("--backend", default="tract")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", ROOT / "out" / "bench-lifecycle"))
    out.mkdir(parents=True, exist_ok=True)
    source = ROOT / "examples" / "models" / args.model / "1" / "model.onnx"
    backend = ["--backend", args.backend]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for how, mode in (("steady", "poll"), ("poll", "poll"), ("api", "explicit"), ("rollback", "explicit")):
            repo = Path(tmp) / how
            shutil.copytree(ROOT / "examples" / "models" / args.model, repo / args.model)
            srv = Server(repo, mode, out / f"server-{how}.log", backend)
            try:
                if how == "steady":
                    cap = capacity(srv, args, out)
                    rate = cap * args.load_factor
                    results["capacity_rps"] = cap
                    results["rate_rps"] = rate
                    p = bench(srv, args, ["--rate", f"{rate:.1f}", "--duration", "30", "--warmup", "1"], out / "steady")
                    p.wait()
                    results["steady"] = summarize(out / "steady", [])
                elif how == "rollback":
                    results[how] = rollback_run(srv, repo, args, rate, out, source)
                else:
                    results[how] = swap_run(srv, repo, args, rate, how, out, source)
            finally:
                srv.stop()
            print(how, json.dumps(results.get(how, results.get("steady"))), file=sys.stderr)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [f"# lifecycle under load ({args.model}, {args.protocol}, backend {args.backend})", "",
             f"capacity {results['capacity_rps']:.1f}/s (closed loop, 4 clients); open loop at "
             f"{results['rate_rps']:.1f}/s ({args.load_factor:.0%})", "",
             "| run | requests | failed | dropped by the generator | p99 ms | p99 during swaps ms | p99 outside swaps ms | requests during swaps |",
             "|---|---|---|---|---|---|---|---|"]
    for k in ("steady", "poll", "api", "rollback"):
        r = results[k]
        lines.append(f"| {k} | {r['requests']} | {r['failed']} | {r['dropped_by_generator']} | {r['p99_ms']:.2f} | "
                     f"{r['p99_during_swaps_ms']:.2f} | {r['p99_outside_swaps_ms']:.2f} | {r['requests_during_swaps']} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(results[k]["failed"] == 0 for k in ("steady", "poll", "api", "rollback")) else 1


if __name__ == "__main__":
    sys.exit(main())
