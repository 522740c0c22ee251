"""Model lifecycle with Triton's own clients (issue 15): the default control mode is
`none` and refuses the repository API as Triton does; in `poll` mode a new version on disk
takes over while tritonclient keeps sending, and every answer equals ONNX Runtime's output
of the version that gave it (tests/fixtures/lifecycle/plus_k.onnx: y = x + k)."""
import shutil
import threading

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import support

LIFECYCLE = support.ROOT / "tests" / "fixtures" / "lifecycle"
CONFIG = """name: "plus"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 16 ] } ]
dynamic_batching { }
"""


def add_version(repo, version: int, k: int) -> None:
    staging = repo / "plus" / f"staging-{version}"
    staging.mkdir(parents=True)
    shutil.copy(LIFECYCLE / f"plus_{k}.onnx", staging / "model.onnx")
    staging.rename(repo / "plus" / str(version))


def plus_repo(tmp_path):
    repo = tmp_path / "models"
    (repo / "plus").mkdir(parents=True)
    (repo / "plus" / "config.pbtxt").write_text(CONFIG)
    add_version(repo, 1, 1)
    return repo


def reference(k: int, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(LIFECYCLE / f"plus_{k}.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_default_control_mode_refuses_the_repository_api(tmp_path):
    repo = plus_repo(tmp_path)
    srv = support.start_server(repo, tmp_path / "server.log", ["plus"], ["--model-control-mode", "none"])
    try:
        http = httpclient.InferenceServerClient(srv.http_url)
        grpc = grpcclient.InferenceServerClient(srv.grpc_url)
        for call in (lambda: http.load_model("plus"), lambda: http.unload_model("plus"),
                     lambda: grpc.load_model("plus"), lambda: grpc.unload_model("plus")):
            with pytest.raises(InferenceServerException) as e:
                call()
            assert "explicit model load / unload is not allowed if polling is enabled" in str(e.value)
        assert http.is_model_ready("plus")
        assert "model control: every model loads at start" in srv.log_tail(400)
    finally:
        support.stop_server(srv)


def test_poll_mode_swaps_versions_under_load(tmp_path):
    repo = plus_repo(tmp_path)
    srv = support.start_server(repo, tmp_path / "server.log", ["plus"],
                               ["--model-control-mode", "poll", "--repository-poll-secs", "1"])
    x = np.arange(32, dtype=np.float32).reshape(2, 16)
    want = {"1": reference(1, x), "2": reference(2, x)}
    seen, failures = {"1": 0, "2": 0}, []
    stop = threading.Event()

    def client(kind: str) -> None:
        c = (httpclient.InferenceServerClient(srv.http_url) if kind == "http"
             else grpcclient.InferenceServerClient(srv.grpc_url))
        mod = httpclient if kind == "http" else grpcclient
        for _ in range(20000):
            if stop.is_set():
                return
            inp = mod.InferInput("x", [2, 16], "FP32")
            inp.set_data_from_numpy(x)
            try:
                r = c.infer("plus", [inp])
                version = r.get_response()["model_version"] if kind == "http" else r.get_response().model_version
                np.testing.assert_array_equal(r.as_numpy("y"), want[version])
                seen[version] += 1
            except Exception as e:  # noqa: BLE001 - every failure is a test failure
                failures.append(f"{kind}: {e!r}")
                return

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in ("http", "grpc", "http", "grpc")]
        for t in threads:
            t.start()
        assert support.wait_until(lambda: seen["1"] > 20, 30)
        add_version(repo, 2, 2)
        http = httpclient.InferenceServerClient(srv.http_url)
        assert support.wait_until(lambda: seen["2"] > 50 or failures, 60), "version 2 never answered"
        assert support.wait_until(lambda: not http.is_model_ready("plus", "1"), 60), "version 1 stayed loaded"
        stop.set()
        for t in threads:
            t.join(60)
        assert not failures, failures[:3]
        index = {(m["name"], m.get("version")): m["state"] for m in http.get_model_repository_index()}
        assert index == {("plus", "2"): "READY"}, index
    finally:
        stop.set()
        support.stop_server(srv)
