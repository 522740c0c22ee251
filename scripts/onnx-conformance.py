#!/usr/bin/env python3
"""ONNX backend node tests on LRAI's backends (tract, onnxruntime), with Python
onnxruntime on the same files as the anchor.

The onnx wheel's node tests (`onnx/backend/test/data/node`) are used when the wheel
ships them; onnx >= 1.2x no longer does, so they are regenerated once from
`onnx.backend.test.case.node.collect_testcases()` into a cache (standard layout:
model.onnx, test_data_set_0/input_*.pb, output_*.pb).

Each test runs `lrai run MODEL --input NAME=FILE.npy ... --output-dir DIR` in its own
process with a timeout, and each output is compared with the expected one: same shape
and dtype; floats within rtol/atol (NaN == NaN, inf == inf); integers, booleans and
strings exactly. The statuses:

  pass           all outputs match
  fail           wrong values, shape or dtype, or an output missing
  unsupported    LRAI says: unsupported operator / datatype / type, or an input has an
                 element type LRAI has no datatype for (float8, int4, complex, ...)
  load error     any other error before running (model rejected by the engine)
  run error      the engine failed while running, or rejected the inputs
  not a tensor   an input is a sequence, optional or map (LRAI takes tensors only)
  harness dtype  bfloat16 in or out: LRAI supports it but .npy cannot carry it
  timeout/crash  killed by the timeout, by a signal, a panic, or no output written

`--mode const-params` turns inputs 2..n into initializers (written into a modified
model.onnx), as tract's own harness does: real models carry axes, shapes, scales and
the like as initializers, and tract needs such parameters to be constants.

The anchor (`python-ort`) runs Python onnxruntime on the same models and inputs with the
same comparison, in a separate worker process per job slot (a crash or hang costs one
test, not the run).

Usage:
  .venv/bin/python scripts/onnx-conformance.py [--backend tract|onnxruntime|all]
      [--mode strict|const-params|both | --const-params] [--limit N] [--filter SUBSTR]
      [--json OUT] [--lrai target/release/lrai] [--ort-lib PATH] [--jobs 2]

The binary is copied into the work dir first, so a rebuild does not change it mid-run.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path("/tmp/onnx-node-tests")
DEFAULT_WORK = Path("/tmp/lrai-conf/work")

STATUSES = [
    "pass",
    "fail",
    "unsupported",
    "load error",
    "run error",
    "not a tensor",
    "harness dtype",
    "timeout/crash",
]
ANCHOR = "python-ort"
BACKENDS = ["tract", "onnxruntime"]

# ONNX element types that an .npy file can carry and LRAI has a datatype for.
NPY_TYPES = {
    TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.UINT16,
    TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.STRING,
    TensorProto.BOOL, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.UINT32,
    TensorProto.UINT64,
}

UNSUPPORTED_PATTERNS = (
    "unsupported operator",
    "does not support datatype",
    "which lrai does not support",
    "unsupported dtype",
    "unsupported data type",
    "unsupported type",
)
RUN_ERROR_PATTERNS = (
    "failed to run model",
    "needs input",
    "has no input",
    "expected datatype",
    "expected shape",
    "writing output",
)


# ---------------------------------------------------------------------------------------
# Test data: find or regenerate the node tests.


def shipped_node_dir() -> Path | None:
    """The wheel's own node-test directory, when this onnx ships one."""
    d = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    return d if d.is_dir() and any(d.iterdir()) else None


def _write_value(path: Path, value, type_proto: onnx.TypeProto, name: str) -> None:
    """Serialise one input or output as `onnx.backend.test.cmd_tools` does."""
    if type_proto.HasField("map_type"):
        proto = numpy_helper.from_dict(value, name)
    elif type_proto.HasField("sequence_type"):
        proto = numpy_helper.from_list(value, name)
    elif type_proto.HasField("optional_type"):
        proto = numpy_helper.from_optional(value, name)
    elif isinstance(value, TensorProto):
        proto = value
    else:
        proto = numpy_helper.from_array(value, name)
    path.write_bytes(proto.SerializeToString())


def generate_node_tests(cache: Path) -> None:
    """Write every node test case into `cache/<test name>/` in the standard layout."""
    from onnx.backend.test.case import node as node_cases

    print(f"generating ONNX {onnx.__version__} node tests into {cache} ...", file=sys.stderr)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    tmp = cache.with_name(cache.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for case in cases:
        out = tmp / case.name
        out.mkdir(parents=True)
        (out / "model.onnx").write_bytes(case.model.SerializeToString())
        graph = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            data = out / f"test_data_set_{i}"
            data.mkdir()
            for j, v in enumerate(inputs):
                _write_value(data / f"input_{j}.pb", v, graph.input[j].type, graph.input[j].name)
            for j, v in enumerate(outputs):
                _write_value(data / f"output_{j}.pb", v, graph.output[j].type, graph.output[j].name)
    (tmp / "VERSION").write_text(f"onnx {onnx.__version__}\n{len(cases)} tests\n")
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)
    print(f"  {len(cases)} tests written", file=sys.stderr)


def node_test_root(cache: Path, regenerate: bool) -> Path:
    """Directory holding one sub-directory per node test."""
    shipped = shipped_node_dir()
    if shipped and not regenerate:
        return shipped
    stamp = cache / "VERSION"
    if regenerate or not stamp.is_file() or f"onnx {onnx.__version__}\n" not in stamp.read_text():
        generate_node_tests(cache)
    return cache


# ---------------------------------------------------------------------------------------
# One test case, as read from disk.


@dataclasses.dataclass
class Case:
    """A node test: its model, its data set 0, and the op it tests."""

    name: str
    dir: Path
    op: str

    @property
    def data(self) -> Path:
        return self.dir / "test_data_set_0"

    def model(self) -> onnx.ModelProto:
        return onnx.load(str(self.dir / "model.onnx"), load_external_data=False)


def op_of(model: onnx.ModelProto, name: str) -> str:
    """The operator a test exercises: the single node's op_type, or for a function
    expansion (`*_expanded*`) the function's op, read off its renamed edges."""
    nodes = model.graph.node
    if len(nodes) == 1:
        n = nodes[0]
        return n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
    if "_expanded" in name:
        base = name.split("_expanded")[0]
        for n in nodes:
            for edge in list(n.output) + list(n.input):
                i = edge.find("_" + base + "_expanded_function_")
                if i > 0:
                    return edge[:i] + " (expanded)"
        return "? (expanded)"
    return "+".join(sorted({n.op_type for n in nodes}))


def list_cases(root: Path, filt: str | None, limit: int | None) -> list[Case]:
    cases = []
    for d in sorted(p for p in root.iterdir() if (p / "model.onnx").is_file()):
        if filt and filt not in d.name:
            continue
        model = onnx.load(str(d / "model.onnx"), load_external_data=False)
        cases.append(Case(d.name, d, op_of(model, d.name)))
        if limit and len(cases) >= limit:
            break
    return cases


def read_value(path: Path, type_proto: onnx.TypeProto):
    """Decode an input/output .pb according to the graph's declared type."""
    raw = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        p = onnx.SequenceProto()
        p.ParseFromString(raw)
        return numpy_helper.to_list(p)
    if type_proto.HasField("optional_type"):
        p = onnx.OptionalProto()
        p.ParseFromString(raw)
        return numpy_helper.to_optional(p)
    if type_proto.HasField("map_type"):
        p = onnx.MapProto()
        p.ParseFromString(raw)
        return numpy_helper.to_dict(p)
    p = TensorProto()
    p.ParseFromString(raw)
    return p


def elem_name(t: int) -> str:
    return TensorProto.DataType.Name(t)


def is_tensor(tp: onnx.TypeProto) -> bool:
    return tp.HasField("tensor_type")


def to_npy_array(p: TensorProto) -> np.ndarray:
    """A TensorProto as an array LRAI's .npy reader takes (strings as `S` or `U`)."""
    a = numpy_helper.to_array(p)
    if p.data_type == TensorProto.STRING:
        items = a.reshape(-1).tolist()
        if all(isinstance(s, bytes) for s in items):
            a = np.array(items, dtype=np.bytes_).reshape(a.shape)
        else:
            items = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in items]
            a = np.array(items, dtype=np.str_).reshape(a.shape)
    return a


# ---------------------------------------------------------------------------------------
# Preparing a test for LRAI: inputs as .npy, model possibly with constant params.


@dataclasses.dataclass
class Prepared:
    """What a runner needs for one case in one mode, or the status it already has."""

    model: Path
    inputs: list[tuple[str, Path]]  # (name, .npy file)
    feeds: dict  # name -> value, for the anchor
    expected: list[tuple[str, object]]  # (output name, expected value)
    status: str | None = None  # set when the harness already knows the outcome
    detail: str = ""


def const_params_model(model: onnx.ModelProto, protos: list[TensorProto], keep: int) -> onnx.ModelProto:
    """Copy of `model` with graph inputs keep..n turned into initializers."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inputs = list(g.input)
    del g.input[:]
    for j, vi in enumerate(inputs):
        if j < keep or not is_tensor(vi.type) or j >= len(protos):
            g.input.append(vi)
            continue
        t = TensorProto()
        t.CopyFrom(protos[j])
        t.name = vi.name
        g.initializer.append(t)
    if m.ir_version < 4:  # initializers must also be graph inputs before IR 4
        for t in g.initializer:
            if all(vi.name != t.name for vi in g.input):
                g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    return m


def prepare(case: Case, mode: str, work: Path, write_npy: bool = True) -> Prepared:
    """Read a case; write the const-params model and, for LRAI, the inputs as .npy."""
    model = case.model()
    graph = model.graph
    in_files = sorted(case.data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    out_files = sorted(case.data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    values = [read_value(f, graph.input[j].type) for j, f in enumerate(in_files)]
    expected = [
        (graph.output[j].name, _decode(read_value(f, graph.output[j].type)))
        for j, f in enumerate(out_files)
    ]
    model_path = case.dir / "model.onnx"
    live = list(enumerate(values))
    if mode == "const-params" and len(values) > 1:
        protos = [v if isinstance(v, TensorProto) else None for v in values]
        cmodel = const_params_model(model, protos, keep=1)
        model_path = work / "model.onnx"
        work.mkdir(parents=True, exist_ok=True)
        onnx.save(cmodel, str(model_path))
        consts = {t.name for t in cmodel.graph.initializer}
        live = [(j, v) for j, v in live if graph.input[j].name not in consts]
    prep = Prepared(model_path, [], {}, expected)
    for j, v in live:
        name = graph.input[j].name
        prep.feeds[name] = _decode(v)
    # Harness-side verdicts, in order of precedence.
    for j, v in live:
        if not isinstance(v, TensorProto):
            prep.status, prep.detail = "not a tensor", f"input '{graph.input[j].name}' is not a tensor"
            return prep
    for j, v in live:
        if v.data_type == TensorProto.BFLOAT16:
            prep.status, prep.detail = "harness dtype", f"input '{graph.input[j].name}' is BFLOAT16"
            return prep
        if v.data_type not in NPY_TYPES:
            prep.status = "unsupported"
            prep.detail = f"input '{graph.input[j].name}' has element type {elem_name(v.data_type)}"
            return prep
    for o in graph.output:
        if is_tensor(o.type) and o.type.tensor_type.elem_type == TensorProto.BFLOAT16:
            prep.status, prep.detail = "harness dtype", f"output '{o.name}' is BFLOAT16"
            return prep
    if not write_npy:
        return prep
    work.mkdir(parents=True, exist_ok=True)
    for k, (j, v) in enumerate(live):
        f = work / f"input_{k}.npy"
        np.save(f, to_npy_array(v), allow_pickle=False)
        prep.inputs.append((graph.input[j].name, f))
    return prep


def _decode(v):
    if isinstance(v, TensorProto):
        return numpy_helper.to_array(v)
    return v


# ---------------------------------------------------------------------------------------
# Comparing outputs.


def _is_string(a: np.ndarray) -> bool:
    return a.dtype.kind in "OSU"


def _as_strings(a: np.ndarray) -> list[str]:
    return [s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s) for s in a.reshape(-1).tolist()]


def compare(expected, actual, rtol: float, atol: float) -> str | None:
    """None when `actual` matches `expected`, else what differs."""
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return "sequence length/type differs"
        for e, a in zip(expected, actual):
            why = compare(e, a, rtol, atol)
            if why:
                return f"sequence element: {why}"
        return None
    if expected is None or actual is None:
        return None if expected is None and actual is None else "optional presence differs"
    if not isinstance(actual, np.ndarray):
        actual = np.asarray(actual)
    expected = np.asarray(expected)
    if tuple(actual.shape) != tuple(expected.shape):
        return f"shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    if _is_string(expected) or _is_string(actual):
        if not (_is_string(expected) and _is_string(actual)):
            return f"dtype {actual.dtype} != expected {expected.dtype}"
        return None if _as_strings(expected) == _as_strings(actual) else "string values differ"
    exp_dt = expected.dtype
    if exp_dt.kind not in "biufc":  # ml_dtypes (float8, int4, ...): compare as float
        expected = expected.astype(np.float32)
        actual = actual.astype(np.float32) if actual.dtype.kind not in "biufc" else actual
    elif actual.dtype != exp_dt:
        return f"dtype {actual.dtype} != expected {exp_dt}"
    if expected.dtype.kind in "bui":
        if np.array_equal(expected, actual):
            return None
        bad = int(np.count_nonzero(expected != actual))
        return f"{bad}/{expected.size} values differ"
    e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
    a = actual.astype(e.dtype)
    ok = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if ok.all():
        return None
    diff = np.abs(a - e)[~ok]
    diff = diff[np.isfinite(diff)]
    worst = f", max abs diff {float(diff.max()):.3g}" if diff.size else ""
    return f"{int((~ok).sum())}/{e.size} values differ{worst}"


def compare_outputs(expected: list[tuple[str, object]], actual: list[tuple[str, object]], rtol, atol) -> str | None:
    """Match outputs by name (by position when the names do not match) and compare."""
    by_name = dict(actual)
    for j, (name, exp) in enumerate(expected):
        if name in by_name:
            got = by_name[name]
        elif j < len(actual):
            got = actual[j][1]
        else:
            return f"output '{name}' missing"
        why = compare(exp, got, rtol, atol)
        if why:
            return f"output '{name}': {why}"
    return None


# ---------------------------------------------------------------------------------------
# Runners.


@dataclasses.dataclass
class Result:
    status: str
    detail: str = ""
    seconds: float = 0.0


def classify_error(message: str) -> str:
    low = message.lower()
    if any(p in low for p in UNSUPPORTED_PATTERNS):
        return "unsupported"
    if any(p in low for p in RUN_ERROR_PATTERNS):
        return "run error"
    return "load error"


def _error_text(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("error:"):
            return " ".join(lines[i:]).removeprefix("error:").strip()[:600]
    return " ".join(lines[-4:])[:600]


def _panic_text(stderr: str) -> str:
    """`panicked at FILE:LINE:COL: MESSAGE` from a Rust panic report, on one line."""
    tail = stderr[stderr.find("panicked at"):]
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip() and not ln.startswith("note:")]
    return " ".join(dict.fromkeys(lines))[:600]


@dataclasses.dataclass
class LraiRunner:
    """Runs one test through `lrai run` in a subprocess."""

    binary: Path
    backend: str
    ort_lib: str | None
    timeout: float
    rtol: float
    atol: float

    def run(self, prep: Prepared, out_dir: Path) -> Result:
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = [str(self.binary), "run", str(prep.model), "--backend", self.backend,
               "--intra-op-threads", "1", "--output-dir", str(out_dir)]
        for name, f in prep.inputs:
            cmd += ["--input", f"{name}={f}"]
        env = dict(os.environ, LRAI_LOG="warn", RUST_BACKTRACE="0")
        if self.backend == "onnxruntime" and self.ort_lib:
            cmd += ["--ort-lib", self.ort_lib]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                               timeout=self.timeout, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Result("timeout/crash", f"timeout after {self.timeout:g} s")
        if "panicked at" in p.stderr:
            return Result("timeout/crash", f"PANIC (exit code {p.returncode}): {_panic_text(p.stderr)}")
        if p.returncode < 0:
            return Result("timeout/crash", f"killed by {signal.Signals(-p.returncode).name}: {_error_text(p.stderr)}")
        if p.returncode != 0:
            if p.returncode != 1:
                return Result("timeout/crash", f"exit code {p.returncode}: {_error_text(p.stderr)}")
            msg = _error_text(p.stderr)
            return Result(classify_error(msg), msg)
        manifest = out_dir / "outputs.json"
        if not manifest.is_file():
            return Result("timeout/crash", "exit 0 but no outputs.json")
        try:
            entries = json.loads(manifest.read_text())["outputs"]
            actual = [(e["name"], np.load(out_dir / e["file"], allow_pickle=False)) for e in entries]
        except Exception as e:  # noqa: BLE001 - any unreadable output is a harness-visible failure
            return Result("fail", f"cannot read outputs: {e}")
        why = compare_outputs(prep.expected, actual, self.rtol, self.atol)
        return Result("fail", why) if why else Result("pass")


ANCHOR_SERVE_FLAG = "--anchor-serve"


def anchor_serve(rtol: float, atol: float) -> None:
    """Worker loop for the Python onnxruntime anchor: one JSON request per stdin line
    ({"model", "case", "mode", "work"}), one JSON result per stdout line."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        try:
            res = _anchor_one(ort, req, rtol, atol)
        except Exception as e:  # noqa: BLE001 - report, keep serving
            res = Result("run error", f"harness: {type(e).__name__}: {e}"[:600])
        res.seconds = time.perf_counter() - t0
        sys.stdout.write(json.dumps(dataclasses.asdict(res)) + "\n")
        sys.stdout.flush()


def _anchor_one(ort, req: dict, rtol: float, atol: float) -> Result:
    case = Case(req["case"], Path(req["dir"]), "")
    prep = prepare(case, req["mode"], Path(req["work"]), write_npy=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(prep.model), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        msg = str(e).replace("\n", " ")[:600]
        low = msg.lower()
        if any(k in low for k in ("not_implemented", "could not find an implementation",
                                   "not a registered function/op")):
            return Result("unsupported", msg)
        return Result("load error", msg)
    try:
        outs = sess.run(None, prep.feeds)
    except Exception as e:  # noqa: BLE001
        return Result("run error", str(e).replace("\n", " ")[:600])
    names = [o.name for o in sess.get_outputs()]
    why = compare_outputs(prep.expected, list(zip(names, outs)), rtol, atol)
    return Result("fail", why) if why else Result("pass")


class AnchorRunner:
    """Python onnxruntime in a long-lived worker process per job slot; a worker that
    hangs or dies is replaced and costs only the test it was on."""

    def __init__(self, timeout: float, rtol: float, atol: float):
        self.timeout, self.rtol, self.atol = timeout, rtol, atol
        self.local = threading.local()
        self.all: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def _worker(self) -> subprocess.Popen:
        w = getattr(self.local, "proc", None)
        if w is None or w.poll() is not None:
            w = subprocess.Popen(
                [sys.executable, __file__, ANCHOR_SERVE_FLAG, "--rtol", str(self.rtol), "--atol", str(self.atol)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            self.local.proc = w
            with self.lock:
                self.all.append(w)
        return w

    def run(self, case: Case, mode: str, work: Path) -> Result:
        w = self._worker()
        req = {"case": case.name, "dir": str(case.dir), "mode": mode, "work": str(work)}
        w.stdin.write(json.dumps(req) + "\n")
        w.stdin.flush()
        ready, _, _ = select.select([w.stdout], [], [], self.timeout)
        line = w.stdout.readline() if ready else ""
        if line:
            return Result(**json.loads(line))
        if w.poll() is None:
            w.kill()
            w.wait()
            return Result("timeout/crash", f"timeout after {self.timeout:g} s")
        rc = w.returncode
        why = signal.Signals(-rc).name if rc < 0 else f"exit code {rc}"
        return Result("timeout/crash", f"python onnxruntime worker died: {why}")

    def close(self) -> None:
        for w in self.all:
            if w.poll() is None:
                w.stdin.close()
                try:
                    w.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    w.kill()


# ---------------------------------------------------------------------------------------
# Driving a phase (one mode, one backend) and reporting.


def run_phase(cases: list[Case], mode: str, backend: str, args, binary: Path, ort_lib: str | None) -> dict[str, Result]:
    work = args.work_dir / mode
    results: dict[str, Result] = {}
    counts = collections.Counter()
    done = 0
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + args.phase_timeout
    anchor = AnchorRunner(args.timeout, args.rtol, args.atol) if backend == ANCHOR else None
    lrai = None if anchor else LraiRunner(binary, backend, ort_lib, args.timeout, args.rtol, args.atol)

    def one(case: Case) -> None:
        nonlocal done
        t0 = time.perf_counter()
        if time.monotonic() > deadline:
            res = Result("timeout/crash", "not run: phase time limit reached")
        elif anchor:
            res = anchor.run(case, mode, work / case.name)
        else:
            try:
                prep = prepare(case, mode, work / case.name)
            except Exception as e:  # noqa: BLE001 - a case the harness cannot read
                prep = None
                res = Result("run error", f"harness: {type(e).__name__}: {e}"[:600])
            if prep is not None:
                if prep.status:
                    res = Result(prep.status, prep.detail)
                else:
                    res = lrai.run(prep, work / case.name / f"out-{backend}")
        if not res.seconds:
            res.seconds = time.perf_counter() - t0
        with lock:
            results[case.name] = res
            counts[res.status] += 1
            done += 1
            if done % 100 == 0 or done == len(cases):
                summary = ", ".join(f"{s} {counts[s]}" for s in STATUSES if counts[s])
                print(f"[{mode}/{backend}] {done}/{len(cases)} in {time.monotonic() - started:.0f} s: {summary}",
                      file=sys.stderr, flush=True)

    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, cases))
    finally:
        if anchor:
            anchor.close()
    return {c.name: results[c.name] for c in cases}


def pct(n: int, total: int) -> str:
    return f"{n} ({100.0 * n / total:.1f} %)" if total else str(n)


def status_table(mode: str, by_backend: dict[str, dict[str, Result]], seconds: dict[str, float]) -> str:
    head = ["backend", "tests"] + STATUSES + ["wall s"]
    rows = []
    for backend, res in by_backend.items():
        c = collections.Counter(r.status for r in res.values())
        total = len(res)
        rows.append([backend, str(total)] + [pct(c[s], total) if s == "pass" else str(c[s]) for s in STATUSES]
                    + [f"{seconds[backend]:.0f}"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(x.ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"### {mode}", "", line(head), sep] + [line(r) for r in rows])


def top_ops(cases: dict[str, Case], res: dict[str, Result], n: int) -> str:
    """Op types of tests that do not pass (not-a-tensor and harness-dtype left out)."""
    skip = {"pass", "not a tensor", "harness dtype"}
    c = collections.Counter(cases[t].op for t, r in res.items() if r.status not in skip)
    by_op_status = collections.defaultdict(collections.Counter)
    for t, r in res.items():
        if r.status not in skip:
            by_op_status[cases[t].op][r.status] += 1
    total = collections.Counter(cases[t].op for t in res)
    lines = []
    for op, k in c.most_common(n):
        kinds = ", ".join(f"{s} {m}" for s, m in by_op_status[op].most_common())
        lines.append(f"  {op}: {k}/{total[op]} ({kinds})")
    unsup = collections.Counter()
    for r in res.values():
        m = re.search(r"unsupported operator '([^']+)'", r.detail)
        if r.status == "unsupported" and m:
            unsup[m.group(1)] += 1
    if not lines:
        lines.append("  (none)")
    if unsup:
        lines.append("  operators named in 'unsupported operator' errors: "
                     + ", ".join(f"{op} {k}" for op, k in unsup.most_common(n)))
    return "\n".join(lines)


def agreement(anchor: dict[str, Result], other: dict[str, Result], name: str, n_list: int) -> str:
    """How `other` does on the tests the Python onnxruntime anchor passes, and vice versa."""
    common = [t for t in anchor if t in other]
    a_pass = {t for t in common if anchor[t].status == "pass"}
    o_pass = {t for t in common if other[t].status == "pass"}
    lines = [
        f"  {name} vs {ANCHOR}: both pass {len(a_pass & o_pass)}, "
        f"only {ANCHOR} passes {len(a_pass - o_pass)}, only {name} passes {len(o_pass - a_pass)}; "
        f"on the {len(a_pass)} tests {ANCHOR} passes, {name} passes {pct(len(a_pass & o_pass), len(a_pass))}",
    ]
    miss = collections.Counter(other[t].status for t in a_pass - o_pass)
    if miss:
        lines.append("    where only python-ort passes, " + name + " gives: "
                     + ", ".join(f"{s} {k}" for s, k in miss.most_common()))
    for t in sorted(a_pass - o_pass)[:n_list]:
        lines.append(f"    {t}: {other[t].status}: {other[t].detail[:160]}")
    if len(a_pass - o_pass) > n_list:
        lines.append(f"    ... {len(a_pass - o_pass) - n_list} more (see --json)")
    for t in sorted(o_pass - a_pass)[:n_list]:
        lines.append(f"    only {name}: {t} ({ANCHOR}: {anchor[t].status}: {anchor[t].detail[:120]})")
    return "\n".join(lines)


def crashes(res: dict[str, Result]) -> list[str]:
    return [f"{t}: {r.detail[:300]}" for t, r in res.items() if r.status == "timeout/crash"]


def find_ort_lib() -> str | None:
    """LRAI_ORT_LIB, else the library inside the onnxruntime package of this Python."""
    if os.environ.get("LRAI_ORT_LIB"):
        return os.environ["LRAI_ORT_LIB"]
    try:
        import importlib.util

        spec = importlib.util.find_spec("onnxruntime")
    except ImportError:
        return None
    if not spec or not spec.submodule_search_locations:
        return None
    libs = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "capi", "libonnxruntime.so*")))
    return max(libs, key=len) if libs else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["tract", "onnxruntime", "all"], default="all")
    p.add_argument("--mode", choices=["strict", "const-params", "both"], default="strict")
    p.add_argument("--const-params", dest="mode", action="store_const", const="const-params",
                   help="same as --mode const-params: inputs 2..n become initializers")
    p.add_argument("--no-anchor", action="store_true", help="skip the Python onnxruntime anchor")
    p.add_argument("--limit", type=int, help="run only the first N tests (after --filter)")
    p.add_argument("--filter", help="run only tests whose name contains SUBSTR")
    p.add_argument("--json", type=Path, help="write per-test statuses here")
    p.add_argument("--lrai", type=Path, default=ROOT / "target" / "release" / "lrai",
                   help="lrai binary (copied into --work-dir before use)")
    p.add_argument("--ort-lib", default=find_ort_lib(), help="libonnxruntime.so for the onnxruntime backend")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where regenerated node tests live")
    p.add_argument("--regenerate", action="store_true", help="regenerate the node tests even if cached/shipped")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="scratch: inputs as .npy, outputs")
    p.add_argument("--jobs", type=int, default=2, help="tests in flight at once (default 2)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per test")
    p.add_argument("--phase-timeout", type=float, default=3600.0,
                   help="seconds per backend and mode; tests not started by then count as timeout")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--list-fails", type=int, default=15, help="tests listed per disagreement")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv and argv[0] == ANCHOR_SERVE_FLAG:
        a = parse_args(argv[1:])
        anchor_serve(a.rtol, a.atol)
        return 0
    args = parse_args(argv)
    root = node_test_root(args.cache, args.regenerate)
    cases = list_cases(root, args.filter, args.limit)
    if not cases:
        print("no tests selected", file=sys.stderr)
        return 2
    backends = BACKENDS if args.backend == "all" else [args.backend]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    binary = args.work_dir / "lrai"
    shutil.copy2(args.lrai, binary)
    if "onnxruntime" in backends and not args.ort_lib:
        print("warning: no --ort-lib / LRAI_ORT_LIB; lrai will look for ONNX Runtime itself", file=sys.stderr)
    modes = ["strict", "const-params"] if args.mode == "both" else [args.mode]
    print(f"{len(cases)} node tests from {root}; onnx {onnx.__version__}; lrai {args.lrai} "
          f"(copied to {binary}); backends {', '.join(backends)}; modes {', '.join(modes)}", file=sys.stderr)

    by_case = {c.name: c for c in cases}
    report: dict[str, dict[str, dict[str, Result]]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for mode in modes:
        report[mode], seconds[mode] = {}, {}
        for backend in ([] if args.no_anchor else [ANCHOR]) + backends:
            t0 = time.monotonic()
            report[mode][backend] = run_phase(cases, mode, backend, args, binary, args.ort_lib)
            seconds[mode][backend] = time.monotonic() - t0

    print(f"ONNX {onnx.__version__} node tests: {len(cases)}; rtol {args.rtol:g}, atol {args.atol:g}\n")
    for mode, by_backend in report.items():
        print(status_table(mode, by_backend, seconds[mode]))
        print()
        for backend, res in by_backend.items():
            print(f"{backend} ({mode}): op types of tests that do not pass, most first")
            print(top_ops(by_case, res, 15))
            bad = crashes(res)
            if bad:
                print(f"  timeout/crash ({len(bad)}):")
                for b in bad:
                    print(f"    {b}")
            print()
        if ANCHOR in by_backend:
            print(f"agreement with {ANCHOR} ({mode}):")
            for backend in backends:
                print(agreement(by_backend[ANCHOR], by_backend[backend], backend, args.list_fails))
            print()
    if "strict" in report and "const-params" in report:
        for backend in backends:
            s, c = report["strict"][backend], report["const-params"][backend]
            gained = sorted(t for t in s if s[t].status != "pass" and c[t].status == "pass")
            lost = sorted(t for t in s if s[t].status == "pass" and c[t].status != "pass")
            print(f"{backend}: {len(gained)} tests pass only with constant params; {len(lost)} pass only strict"
                  + (f" ({', '.join(lost[:10])})" if lost else ""))

    if args.json:
        doc = {
            "onnx": onnx.__version__,
            "tests": len(cases),
            "rtol": args.rtol,
            "atol": args.atol,
            "lrai": str(args.lrai),
            "ort_lib": args.ort_lib,
            "op": {c.name: c.op for c in cases},
            "seconds": seconds,
            "results": {
                mode: {b: {t: dataclasses.asdict(r) for t, r in res.items()} for b, res in by_backend.items()}
                for mode, by_backend in report.items()
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"per-test statuses written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
