"""MLflow model directories as repository versions: a directory written by
`mlflow.onnx.save_model` served as `<model>/1/`, with the names, types and shapes of its
signature, called by Triton's own clients and checked against ONNX Runtime; MLmodel files
LRAI can't serve are UNAVAILABLE with a reason, and the other models keep serving."""

from __future__ import annotations

import json

import numpy as np
import pytest

import support

GOOD = "mlflow_linear"
NOT_ONNX = "mlflow_sklearn"
ESCAPES = "mlflow_escape"
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 7.0


def _linear_model():
    """x [n, f] @ W [4, 3]: the model leaves its feature dimension free, the signature
    fixes it to 4, so the served metadata shows which one LRAI took."""
    from onnx import TensorProto as T
    from onnx import helper

    x = helper.make_tensor_value_info("x", T.FLOAT, ["n", "f"])
    y = helper.make_tensor_value_info("y", T.FLOAT, ["n", 3])
    w = helper.make_tensor("w", T.FLOAT, [4, 3], W.flatten().tolist())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "linear", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _save_mlflow(path):
    import mlflow.onnx
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    sig = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 4), "x")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3), "y")]),
    )
    mlflow.onnx.save_model(_linear_model(), str(path), signature=sig)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("mlflow")
    repo = work / "models"
    _save_mlflow(repo / GOOD / "1")
    sk = repo / NOT_ONNX / "1"
    sk.mkdir(parents=True)
    (sk / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n"
        "  python_function:\n    loader_module: mlflow.sklearn\n")
    esc = repo / ESCAPES / "1"
    esc.mkdir(parents=True)
    (esc / "MLmodel").write_text("flavors:\n  onnx:\n    data: ../../mlflow_linear/1/model.onnx\n")
    support.build_small_repository(repo)
    srv = support.start_server(repo, work / "server.log", [GOOD, "digits_mlp"])
    yield srv
    support.stop_server(srv)


def test_metadata_takes_the_signature(mlflow_server):
    meta = support.http_request(f"{mlflow_server.base}/v2/models/{GOOD}").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], meta
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}], meta


def test_infers_like_onnx_runtime_over_http_and_grpc(mlflow_server):
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    sess = ort.InferenceSession(str(mlflow_server.repo / GOOD / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(15)
    batches = [rng.standard_normal((n, 4)).astype(np.float32) for n in (1, 3, 1, 4)]
    h = httpclient.InferenceServerClient(mlflow_server.http_url)
    g = grpcclient.InferenceServerClient(mlflow_server.grpc_url)
    try:
        for _ in range(3):  # the same requests again, interleaved
            for x in batches:
                want = sess.run(["y"], {"x": x})[0]
                for mod, client in ((httpclient, h), (grpcclient, g)):
                    inp = mod.InferInput("x", list(x.shape), "FP32")
                    inp.set_data_from_numpy(x)
                    got = client.infer(GOOD, [inp]).as_numpy("y")
                    support.rtol_close(got, want)
    finally:
        h.close()
        g.close()


def test_a_shape_the_signature_refuses_is_a_clear_error(mlflow_server):
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 5], "data": [0.0] * 5}]}
    r = support.post_json(f"{mlflow_server.base}/v2/models/{GOOD}/infer", doc)
    assert r.status == 400, r.body
    assert "'x'" in r.error() and "[-1,4]" in r.error().replace(" ", ""), r.error()


def test_what_lrai_ignores_in_mlmodel_is_logged(mlflow_server):
    log = mlflow_server.log_path.read_text(errors="replace")
    warnings = [json.loads(line) for line in log.splitlines()
                if line.startswith("{") and "MLmodel" in line]
    texts = " | ".join(str(w.get("fields", w)) for w in warnings)
    assert "providers [CUDAExecutionProvider, CPUExecutionProvider] are ignored" in texts, texts


@pytest.mark.parametrize("model,reason", [
    (NOT_ONNX, "no onnx flavor (flavors: sklearn, python_function)"),
    (ESCAPES, "outside its directory"),
])
def test_mlmodel_lrai_cannot_serve_is_unavailable_with_its_reason(mlflow_server, model, reason):
    r = support.post_json(f"{mlflow_server.base}/v2/repository/index", {})
    rows = {row["name"]: row for row in r.json()}
    assert rows[model]["state"] == "UNAVAILABLE", rows[model]
    assert reason in rows[model]["reason"], rows[model]
    assert rows["digits_mlp"]["state"] == "READY"
    assert rows[GOOD]["state"] == "READY"
