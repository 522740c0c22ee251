"""Shared helpers of the conformance suite: starting/stopping an `lrai serve` process,
building the temporary model repository, raw HTTP through urllib, and the ONNX Runtime
reference. Imported by conftest.py and the test modules (pytest puts this directory on
sys.path because it has no __init__.py).

Every wait here is bounded in both iterations and seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import dtype_models

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = ROOT / "examples" / "models"
FIXTURES = ROOT / "tests" / "fixtures" / "triton"

# Models that must become READY before the tests start (the rest are broken on purpose).
GOOD_MODELS = [
    "digits_mlp",
    "digits_cnn",
    "mobilenet_v2",
    "digits_fixed",
    "digits_prio",
    "multi_io",
    "types_id",
    "mobilenet_q",
    "versioned_all",
    "versioned_latest",
    "reshape_var",
    "scalar_row",
    "string_cast",
    "upsample_concat",
    "upsample_odd",
    "lstm_state",
    "text_echo",
    "text_any",
    *dtype_models.MODELS,
    *dtype_models.ORT_ONLY,
]
BROKEN_MODEL = "broken"


def backend() -> str:
    """The backend the server runs (LRAI_TEST_BACKEND; `auto` is ONNX Runtime when its
    library is found, as the server decides)."""
    b = os.environ.get("LRAI_TEST_BACKEND", "auto")
    if b == "auto":
        return "onnxruntime" if (os.environ.get("LRAI_ORT_LIB") or ort_library()) else "tract"
    return b


# Defects of the tract backend (crates/lrai-backend) the suite finds, not fixed yet: on
# tract their tests are strict xfails, so a fix turns them into XPASS, which fails the run
# until the entry is removed here. LRAI_CONFORMANCE_NO_XFAIL=1 runs them as ordinary tests.
# Known defects of the tract backend, as {key: why}. Empty since issue 14's fixes (fresh run
# state per run; no load-time plan failure on invented free dims).
TRACT_DEFECTS: dict[str, str] = {}

TRACT_UNLOADABLE: dict[str, str] = {}


def good_models() -> list[str]:
    """The models that must become READY on this run's backend."""
    if backend() != "tract":
        return list(GOOD_MODELS)
    return [m for m in GOOD_MODELS
            if m not in TRACT_UNLOADABLE and m not in dtype_models.ORT_ONLY]


def tract_defect(key: str):
    """Marks a test of a known tract defect: a strict xfail when the server runs tract."""
    import pytest

    if backend() != "tract" or os.environ.get("LRAI_CONFORMANCE_NO_XFAIL") == "1":
        return pytest.mark.known_bug(key)
    return pytest.mark.xfail(reason=f"known tract defect [{key}]: {TRACT_DEFECTS[key]}",
                             strict=True)

# Server bugs this suite found and that are not fixed yet. Their tests are strict xfails: a
# fix turns them into XPASS, which fails the run until the marker is removed here.
# LRAI_CONFORMANCE_NO_XFAIL=1 runs them as ordinary tests.
KNOWN_BUGS = {
    "grpc-too-large-code": (
        "gRPC message over the limit answers OUT_OF_RANGE (tonic's default); grpc C++/Triton "
        "and LRAI's own error table use RESOURCE_EXHAUSTED"),
}


def known_bug(key: str):
    import pytest

    if os.environ.get("LRAI_CONFORMANCE_NO_XFAIL") == "1":
        return pytest.mark.known_bug(key)
    return pytest.mark.xfail(reason=f"known server bug [{key}]: {KNOWN_BUGS[key]}", strict=True)


STARTUP_TIMEOUT_S = float(os.environ.get("LRAI_TEST_STARTUP_TIMEOUT", "180"))
HTTP_TIMEOUT_S = 60.0


def rtol_close(got: np.ndarray, want: np.ndarray) -> None:
    """|got - want| <= 1e-4 + 1e-3 |want|, elementwise, with a readable failure."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} != reference {want.shape}"
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    tol = 1e-4 + 1e-3 * np.abs(want.astype(np.float64))
    bad = err > tol
    assert not bad.any(), (
        f"{int(bad.sum())} of {bad.size} elements off; worst |diff|={err.max():.3g} "
        f"at {np.unravel_index(err.argmax(), err.shape)}"
    )


# ---------------------------------------------------------------- raw HTTP (stdlib only)


@dataclass
class RawResponse:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def error(self) -> str:
        """The `error` field of a KServe error body (asserts it is one)."""
        doc = self.json()
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str), doc
        assert doc["error"], "empty error message"
        return doc["error"]


def http_request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> RawResponse:
    """One request; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return RawResponse(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return RawResponse(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def post_json(url: str, doc, headers: dict | None = None) -> RawResponse:
    body = doc if isinstance(doc, (bytes, bytearray)) else json.dumps(doc).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return http_request(url, "POST", body, h)


def post_binary(url: str, header: dict, tensors: list[bytes], header_len: int | str | None = None,
                extra: bytes = b"") -> RawResponse:
    """JSON header + binary tensor bytes (Triton's binary tensor data extension)."""
    j = json.dumps(header).encode()
    hl = len(j) if header_len is None else header_len
    body = j + b"".join(tensors) + extra
    return http_request(
        url,
        "POST",
        body,
        {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(hl)},
    )


def split_binary_response(resp: RawResponse) -> tuple[dict, bytes]:
    n = int(resp.headers["inference-header-content-length"])
    return json.loads(resp.body[:n]), resp.body[n:]


# ---------------------------------------------------------------- ONNX Runtime reference


class Reference:
    """In-process onnxruntime sessions on the repository's model files."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._sessions = {}

    def run(self, model: str, feeds: dict, version: str = "1") -> dict:
        import onnxruntime as ort

        key = (model, version)
        if key not in self._sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self._sessions[key] = ort.InferenceSession(
                str(self.repo / model / version / "model.onnx"), so,
                providers=["CPUExecutionProvider"]
            )
        s = self._sessions[key]
        names = [o.name for o in s.get_outputs()]
        return dict(zip(names, s.run(names, feeds)))


# ---------------------------------------------------------------- the temporary repository


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _copy_model(src: str, dst_repo: Path, name: str | None = None, config: str | None = None):
    name = name or src
    d = dst_repo / name
    (d / "1").mkdir(parents=True)
    shutil.copyfile(EXAMPLES / src / "1" / "model.onnx", d / "1" / "model.onnx")
    if config is None:
        config = (EXAMPLES / src / "config.pbtxt").read_text()
    _write(d / "config.pbtxt", config)
    # Files beside config.pbtxt (label files) come along.
    for f in (EXAMPLES / src).iterdir():
        if f.is_file() and f.name != "config.pbtxt":
            shutil.copyfile(f, d / f.name)


def _save_onnx(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def _make_multi_io(path: Path) -> None:
    """a, b: FP32 [N,4] -> sum = a + b, diff = a - b."""
    from onnx import TensorProto, helper

    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4])  # noqa: E731
    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"])],
        "multi_io",
        [vi("a"), vi("b")],
        [vi("sum"), vi("diff")],
    )
    _save_onnx(g, path)


def _make_string_echo(path: Path) -> None:
    """text: STRING [N,1] -> Identity -> echo."""
    from onnx import TensorProto, helper

    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.STRING, ["N", 1])  # noqa: E731
    g = helper.make_graph([helper.make_node("Identity", ["text"], ["echo"])], "string_echo",
                          [vi("text")], [vi("echo")])
    _save_onnx(g, path)


def _make_scaled_mlp(path: Path, factor: float) -> None:
    """digits_mlp whose logits are multiplied by `factor` (a second version, same I/O)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(EXAMPLES / "digits_mlp" / "1" / "model.onnx"))
    g = m.graph
    (out,) = [o.name for o in g.output]
    for n in g.node:
        n.output[:] = [o + "_unscaled" if o == out else o for o in n.output]
    g.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "scale_factor"))
    g.node.append(helper.make_node("Mul", [out + "_unscaled", "scale_factor"], [out]))
    onnx.checker.check_model(m)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


# digits_fixed's label file: 7 lines for 10 classes, the one for 3 empty.
FIXED_LABELS = "zero\none\ntwo\n\nfour\nfive\nsix\n"

# name, ONNX elem type, KServe datatype, config TYPE_*, numpy dtype
TYPED = [
    ("x_fp16", "FLOAT16", "FP16", "TYPE_FP16", np.float16),
    ("x_fp64", "DOUBLE", "FP64", "TYPE_FP64", np.float64),
    ("x_i64", "INT64", "INT64", "TYPE_INT64", np.int64),
    ("x_i32", "INT32", "INT32", "TYPE_INT32", np.int32),
    ("x_u8", "UINT8", "UINT8", "TYPE_UINT8", np.uint8),
    ("x_bool", "BOOL", "BOOL", "TYPE_BOOL", np.bool_),
]


def _make_types_id(path: Path) -> None:
    """One Identity per datatype: x_T [N,3] -> y_T [N,3]."""
    from onnx import TensorProto, helper

    ins, outs, nodes = [], [], []
    for name, et, *_ in TYPED:
        t = getattr(TensorProto, et)
        y = "y" + name[1:]
        ins.append(helper.make_tensor_value_info(name, t, ["N", 3]))
        outs.append(helper.make_tensor_value_info(y, t, ["N", 3]))
        nodes.append(helper.make_node("Identity", [name], [y]))
    _save_onnx(helper.make_graph(nodes, "types_id", ins, outs), path)


def _types_config() -> str:
    ins = ",\n".join(
        f'  {{ name: "{n}" data_type: {tt} dims: [ 3 ] }}' for n, _, _, tt, _ in TYPED
    )
    outs = ",\n".join(
        f'  {{ name: "y{n[1:]}" data_type: {tt} dims: [ 3 ] }}' for n, _, _, tt, _ in TYPED
    )
    return (
        f'name: "types_id"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        f"input [\n{ins}\n]\noutput [\n{outs}\n]\n"
    )


def build_repository(repo: Path) -> None:
    """The suite's model repository (listed in README.md in this directory)."""
    repo.mkdir(parents=True, exist_ok=True)
    for m in ("digits_mlp", "digits_cnn", "mobilenet_v2"):
        _copy_model(m, repo)

    # A model whose file is not ONNX: UNAVAILABLE with a reason, forever.
    _copy_model(
        "digits_mlp",
        repo,
        BROKEN_MODEL,
        (EXAMPLES / "digits_mlp" / "config.pbtxt").read_text().replace("digits_mlp", BROKEN_MODEL),
    )
    (repo / BROKEN_MODEL / "1" / "model.onnx").write_bytes(b"this is not an ONNX model\n" * 4)

    # No batching: the request shape is the full shape, [1,64].
    _copy_model(
        "digits_mlp",
        repo,
        "digits_fixed",
        'name: "digits_fixed"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
        'input [ { name: "input" data_type: TYPE_FP32 dims: [ 1, 64 ] } ]\n'
        'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1, 10 ] '
        'label_filename: "labels.txt" } ]\n',
    )
    # Fewer labels than classes, one empty: those classes come back without a label.
    _write(repo / "digits_fixed" / "labels.txt", FIXED_LABELS)

    # Two priority levels (default 2), small queues.
    _copy_model(
        "digits_mlp",
        repo,
        "digits_prio",
        'name: "digits_prio"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 16\n'
        'input [ { name: "input" data_type: TYPE_FP32 dims: [ 64 ] } ]\n'
        'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
        "dynamic_batching {\n  max_queue_delay_microseconds: 100\n  priority_levels: 2\n"
        "  default_priority_level: 2\n  default_queue_policy { max_queue_size: 4 }\n}\n",
    )

    # A slow model with a queue of 2 and no batching beyond 1: concurrent load overflows.
    _copy_model(
        "mobilenet_v2",
        repo,
        "mobilenet_q",
        'name: "mobilenet_q"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 1\n'
        'input [ { name: "input" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]\n'
        'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1000 ] } ]\n'
        "dynamic_batching {\n  max_queue_delay_microseconds: 0\n"
        "  default_queue_policy { max_queue_size: 2 }\n}\n"
        "instance_group [ { count: 1 kind: KIND_CPU } ]\n",
    )

    # Two inputs, two outputs: requested-output subsets and raw-binary rejection.
    _make_multi_io(repo / "multi_io" / "1" / "model.onnx")
    _write(
        repo / "multi_io" / "config.pbtxt",
        'name: "multi_io"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        "input [\n"
        '  { name: "a" data_type: TYPE_FP32 dims: [ 4 ] },\n'
        '  { name: "b" data_type: TYPE_FP32 dims: [ 4 ] }\n]\n'
        "output [\n"
        '  { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] },\n'
        '  { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] }\n]\n',
    )

    # Two versions that answer differently (1: digits_mlp, 2: digits_mlp with logits * -2),
    # served under version_policy all, and under the default policy (latest 1: version 2 only).
    for name, policy in (("versioned_all", "version_policy: { all: {} }\n"),
                         ("versioned_latest", "")):
        _copy_model("digits_mlp", repo, name, (EXAMPLES / "digits_mlp" / "config.pbtxt")
                    .read_text().replace('"digits_mlp"', f'"{name}"') + policy)
        _make_scaled_mlp(repo / name / "2" / "model.onnx", -2.0)

    # BYTES models for raw binary requests: dims [1] qualify (the body is the one element),
    # dims [-1,1] don't.
    for name, batch, dims in (("text_echo", 4, "1"), ("text_any", 0, "-1, 1")):
        _make_string_echo(repo / name / "1" / "model.onnx")
        _write(
            repo / name / "config.pbtxt",
            f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {batch}\n'
            f'input [ {{ name: "text" data_type: TYPE_STRING dims: [ {dims} ] }} ]\n'
            f'output [ {{ name: "echo" data_type: TYPE_STRING dims: [ {dims} ] }} ]\n',
        )

    # Identity over FP16, FP64, INT64, INT32, UINT8, BOOL.
    _make_types_id(repo / "types_id" / "1" / "model.onnx")
    _write(repo / "types_id" / "config.pbtxt", _types_config())

    _add_triton_fixtures(repo)
    dtype_models.add_dtype_models(repo)


RESHAPE_CONFIG = (
    'name: "reshape_var"\nmax_batch_size: 4\n'
    'input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] '
    "reshape: { shape: [ 8, -1, 1, 6 ] } } ]\n"
    'output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] '
    "reshape: { shape: [ 8, -1, 1, 6 ] } } ]\n"
    "dynamic_batching { }\n"
)
SCALAR_CONFIG = (
    'name: "scalar_row"\nmax_batch_size: 4\n'
    'input [ { name: "s" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]\n'
    'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]\n'
)
UPSAMPLE_ODD_CONFIG = (
    'name: "upsample_odd"\nmax_batch_size: 4\n'
    'input [ { name: "images" data_type: TYPE_FP32 dims: [ 3, 3, 3 ] } ]\n'
    'output [ { name: "features" data_type: TYPE_FP32 dims: [ 6, -1, -1 ] } ]\n'
)


def _add_triton_fixtures(repo: Path) -> None:
    """The models of tests/fixtures/triton (scripts/make-triton-fixtures.py): config.pbtxt
    reshape with a -1 and with [] (a scalar per row), models the implicit warm-up used to
    make UNAVAILABLE (they parse strings, or have free H and W), one whose configured
    dims it can't run (upsample_odd: the warm-up fails and is skipped), and an LSTM
    whose state goes in and out."""
    for name, file, config in (
        ("reshape_var", "reshape_var.onnx", RESHAPE_CONFIG),
        ("scalar_row", "scalar_row.onnx", SCALAR_CONFIG),
        ("string_cast", "string_cast.onnx", None),
        ("upsample_concat", "upsample_concat.onnx", None),
        ("upsample_odd", "upsample_concat.onnx", UPSAMPLE_ODD_CONFIG),
        ("lstm_state", "lstm_state.onnx", None),
    ):
        (repo / name / "1").mkdir(parents=True)
        shutil.copyfile(FIXTURES / file, repo / name / "1" / "model.onnx")
        if config is not None:
            _write(repo / name / "config.pbtxt", config)


def build_small_repository(repo: Path, models=("digits_mlp",)) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    for m in models:
        _copy_model(m, repo)


# ---------------------------------------------------------------- the server process


def server_binary() -> Path:
    p = Path(os.environ.get("LRAI_BIN", ROOT / "target" / "release" / "lrai"))
    if not p.is_absolute():
        p = ROOT / p
    return p


def ort_library() -> str | None:
    """libonnxruntime.so of the onnxruntime package this Python has (or None)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    capi = Path(onnxruntime.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so*"))
    return str(libs[-1]) if libs else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    repo: Path
    log_path: Path
    backend: str
    extra: list = field(default_factory=list)

    @property
    def http_url(self) -> str:
        """host:port, as tritonclient.http wants it."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def alive(self) -> bool:
        return self.proc.poll() is None


def _model_ready(base: str, model: str) -> bool:
    try:
        return http_request(f"{base}/v2/models/{model}/ready", timeout=5).status == 200
    except (OSError, urllib.error.URLError):
        return False


def start_server(repo: Path, log_path: Path, ready_models: list[str], extra: list[str] | None = None,
                 attempts: int = 3) -> Server:
    """Starts `lrai serve` on free ports and waits (bounded) until `ready_models` are READY.

    Readiness is per model: the server as a whole stays not-ready while `broken` fails.
    The suite drives the repository API, so the server runs with --model-control-mode
    explicit unless `extra` names a mode (the server's own default is none)."""
    binary = server_binary()
    if not binary.exists():
        raise RuntimeError(f"server binary {binary} not found (set LRAI_BIN)")
    backend = os.environ.get("LRAI_TEST_BACKEND", "auto")
    env = dict(os.environ)
    if backend in ("auto", "onnxruntime") and not env.get("LRAI_ORT_LIB"):
        lib = ort_library()
        if lib:
            env["LRAI_ORT_LIB"] = lib
    env.setdefault("LRAI_LOG", "info")
    last_err = ""
    for attempt in range(attempts):
        ports = [free_port(), free_port(), free_port()]
        if len(set(ports)) < 3:
            continue
        args = [
            str(binary), "serve",
            "--model-repository", str(repo),
            "--address", "127.0.0.1",
            "--http-port", str(ports[0]),
            "--grpc-port", str(ports[1]),
            "--metrics-port", str(ports[2]),
            "--backend", backend,
            "--log-format", "json",
            *([] if "--model-control-mode" in (extra or []) else ["--model-control-mode", "explicit"]),
            *(extra or []),
        ]
        log = open(log_path, "ab")
        log.write(f"\n=== attempt {attempt}: {' '.join(args)}\n".encode())
        log.flush()
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=str(repo.parent))
        log.close()
        srv = Server(proc, *ports, repo=repo, log_path=log_path, backend=backend, extra=extra or [])
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        pending = list(ready_models)
        for _ in range(int(STARTUP_TIMEOUT_S / 0.2) + 1):
            if not srv.alive() or time.monotonic() > deadline:
                break
            pending = [m for m in pending if not _model_ready(srv.base, m)]
            if not pending:
                return srv
            time.sleep(0.2)
        last_err = (f"server exited with {proc.returncode}" if not srv.alive()
                    else f"models not ready after {STARTUP_TIMEOUT_S:.0f}s: {pending}")
        stop_server(srv)
        if "Address already in use" not in srv.log_tail(200) and "in use" not in srv.log_tail(20):
            break  # not a port race: retrying will not help
    raise RuntimeError(f"lrai serve did not start: {last_err}\n--- log ---\n"
                       f"{log_path.read_text(errors='replace')[-4000:]}")


def stop_server(srv: Server, grace_s: float = 15.0) -> int | None:
    """SIGTERM to the process group, bounded wait, then SIGKILL."""
    if srv.proc.poll() is None:
        try:
            os.killpg(srv.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            srv.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(srv.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            srv.proc.wait(timeout=10)
    return srv.proc.returncode


def server_socket_option(pid: int, port: int, level: int, option: int) -> list[int]:
    """getsockopt on the server process's ESTABLISHED sockets whose local port is `port`
    (Linux: /proc + pidfd_getfd). Raises OSError where the kernel or sandbox refuses."""
    import ctypes
    import socket as so

    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01":
                inodes.add(f[9])
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            fds.append(int(fd))
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    values = []
    try:
        for fd in fds:
            mine = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd (x86_64 and aarch64)
            if mine < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
            s = so.socket(fileno=mine)
            try:
                values.append(s.getsockopt(level, option))
            finally:
                s.close()  # closes only this process's duplicate
    finally:
        os.close(pidfd)
    return values


def wait_until(pred, timeout_s: float = 30.0, step_s: float = 0.1) -> bool:
    """Polls `pred` until true; bounded in time and iterations."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / step_s) + 1):
        if pred():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(step_s)
    return bool(pred())
