"""Run the built `lrai` on every corpus model and compare with the ONNX Runtime references.

    python scripts/corpus/check.py [--small] [--only ID ...] [--lrai target/release/lrai]
        [--json results.json] [--markdown table.md] [--expected scripts/corpus/expected-tract.json]

For each model, backend (onnxruntime, tract, auto) and reference batch, `lrai run`
runs once (`--repeat 1`) and once more with `--repeat 3` (the last of three runs
must still match: a state kept between runs shows here). Each case is a match, a
wrong answer, a load failure, a run failure or a panic (exit 101 or a signal),
with the reason. Exit status: 1 on any onnxruntime mismatch, any panic, or, with
`--expected`, any tract result other than the expected one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import common
import compare
import manifest
import report

BACKENDS = ("onnxruntime", "tract", "auto")
MATCH, WRONG, LOAD, RUN, PANIC = "match", "wrong answer", "load failure", "run failure", "panic"


@dataclass
class Case:
    model: str
    backend: str
    batch: int
    repeat: int
    result: str
    reason: str = ""
    seconds: float = 0.0


def ort_library() -> str:
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so.*"))
    if not libs:
        raise SystemExit(f"no libonnxruntime.so.* in '{capi}'")
    return str(libs[0])


def lrai_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LRAI_ORT_LIB", ort_library())
    env["RUST_BACKTRACE"] = "0"
    env.setdefault("LRAI_LOG", "warn")
    return env


def panic_reason(stderr: str) -> str:
    """`thread 'main' panicked at FILE:LINE:COL:` and the message line after it."""
    lines = stderr.splitlines()
    for k, line in enumerate(lines):
        if "panicked at" in line:
            msg = lines[k + 1].strip() if k + 1 < len(lines) else ""
            # The thread id changes every run; the docs and the expected list shouldn't.
            where = re.sub(r"thread '([^']*)' \(\d+\)", r"thread '\1'", line.strip())
            return f"{where} {msg}".strip()
    return lines[-1].strip() if lines else ""


def first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def crashed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == 101 or proc.returncode < 0 or "panicked at" in proc.stderr


def inspect(lrai: str, model: Path, env: dict[str, str], timeout: float) -> dict:
    """What `lrai inspect --json` says loads: {backend: error or None}, or a panic."""
    try:
        proc = subprocess.run([lrai, "inspect", str(model), "--json"], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"inspect timed out after {timeout:.0f} s"}
    if crashed(proc):
        return {"panic": panic_reason(proc.stderr)}
    if proc.returncode != 0:
        return {"error": first_error(proc.stderr)}
    doc = json.loads(proc.stdout)
    return {"loads": {k: (None if v.get("loads") else v.get("error", "does not load")) for k, v in doc.get("backends", {}).items()}}


def run_case(lrai: str, m: manifest.Model, backend: str, batch: int, repeat: int, ctx: dict) -> Case:
    refs = common.refs_dir(m.id)
    case = Case(m.id, backend, batch, repeat, MATCH)
    with tempfile.TemporaryDirectory(prefix="lrai-corpus-") as out:
        cmd = [lrai, "run", str(common.model_path(m.id)), "-i", str(refs / f"b{batch}.inputs.npz"),
               "--backend", backend, "--output-dir", out, "--repeat", str(repeat)]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=ctx["env"], timeout=ctx["timeout"])
        except subprocess.TimeoutExpired:
            case.result, case.reason = RUN, f"timed out after {ctx['timeout']:.0f} s"
            return case
        case.seconds = round(time.monotonic() - started, 2)
        if crashed(proc):
            case.result, case.reason = PANIC, panic_reason(proc.stderr)
        elif proc.returncode != 0:
            loads = ctx["inspect"].get("loads", {})
            kind = "onnxruntime" if backend == "auto" else backend
            load_error = loads.get(kind)
            case.result = LOAD if load_error else RUN
            case.reason = first_error(proc.stderr)
        else:
            expected = dict(np.load(refs / f"b{batch}.outputs.npz"))
            problem = compare.outputs(Path(out), expected, manifest.TOLERANCES[m.tol])
            if problem:
                case.result, case.reason = WRONG, problem
    return case


def check_model(lrai: str, m: manifest.Model, backends: list[str], ctx: dict) -> list[Case]:
    meta = json.loads((common.refs_dir(m.id) / "meta.json").read_text())
    ctx = dict(ctx, inspect=inspect(lrai, common.model_path(m.id), ctx["env"], ctx["timeout"]))
    cases = []
    if "panic" in ctx["inspect"]:
        cases.append(Case(m.id, "inspect", 1, 1, PANIC, ctx["inspect"]["panic"]))
    for backend in backends:
        for batch in meta["batches"]:
            for repeat in (1, 3) if batch == 1 else (1,):
                case = run_case(lrai, m, backend, batch, repeat, ctx)
                cases.append(case)
                common.log(f"  {backend:<11} b{batch} x{repeat}: {case.result}{' - ' + case.reason if case.reason else ''}")
                if case.result in (LOAD, PANIC) and repeat == 1:
                    break  # the other cases of this batch fail the same way
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="only the models CI runs")
    ap.add_argument("--only", nargs="+", metavar="ID", help="only these models")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--lrai", default=str(common.REPO / "target" / "release" / "lrai"))
    ap.add_argument("--timeout", type=float, default=600, help="seconds per lrai command")
    ap.add_argument("--json", type=Path, help="write every case here")
    ap.add_argument("--markdown", type=Path, help="write the per-model table here")
    ap.add_argument("--expected", type=Path, help="expected tract results; a difference fails the run")
    ap.add_argument("--write-expected", type=Path, help="write the current tract and auto failures as the expected list")
    ap.add_argument("--doc", type=Path, help="put the figures and the table between the markers of this doc")
    args = ap.parse_args()
    if not Path(args.lrai).exists():
        raise SystemExit(f"no lrai binary at '{args.lrai}': build it with cargo build --release")
    ctx = {"env": lrai_env(), "timeout": args.timeout}
    models = manifest.select(args.small, args.only)
    cases: list[Case] = []
    for k, m in enumerate(models, 1):
        common.log(f"[{k}/{len(models)}] {m.id}")
        cases += check_model(args.lrai, m, args.backends, ctx)
    rows = report.model_rows(models, cases)
    if args.json:
        args.json.write_text(json.dumps({"cases": [asdict(c) for c in cases], "models": rows}, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(report.markdown(rows))
    summary = report.summary(rows, cases)
    print(summary)
    if args.doc:
        shown = " ".join(sys.argv[1:])
        report.update_doc(args.doc, summary, report.markdown(rows), f"scripts/corpus/check.py {shown}".strip())
    if args.write_expected:
        report.write_expected(args.write_expected, rows)
    failures = report.gate(rows, cases, args.expected)
    for line in failures:
        print(f"FAIL {line}")
    failed = {line.split(" ", 1)[0] for line in failures}
    print(f"corpus: {len(models) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
