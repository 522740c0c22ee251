"""Ensembles (`platform: "ensemble"`) through Triton's own clients, HTTP and gRPC: metadata
and config show the ensemble as Triton does, and inference answers what ONNX Runtime gives
running the step models one after another in this process. The repository is
tests/fixtures/ensemble/repo (scripts/make-ensemble-fixtures.py): ens_pipeline runs ens_pre,
then ens_clf and ens_score side by side."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import support
from support import rtol_close

REPO = support.ROOT / "tests" / "fixtures" / "ensemble" / "repo"
STEPS = ["ens_pre", "ens_clf", "ens_score"]
rng = np.random.default_rng(15015)


@pytest.fixture(scope="module")
def ens_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("ensemble")
    repo = work / "models"
    shutil.copytree(REPO, repo)
    srv = support.start_server(repo, work / "server.log", [*STEPS, "ens_pipeline"])
    yield srv
    alive = srv.alive()
    rc = support.stop_server(srv)
    if not alive:
        pytest.fail(f"the ensemble server died during the tests (rc {rc}):\n{srv.log_tail()}")


@pytest.fixture(scope="module")
def steps():
    return {m: ort.InferenceSession(str(REPO / m / "1" / "model.onnx"),
                                    providers=["CPUExecutionProvider"]) for m in STEPS}


def expected(steps, raw: np.ndarray) -> dict[str, np.ndarray]:
    feat = steps["ens_pre"].run(None, {"raw": raw})[0]
    return {
        "PROBS": steps["ens_clf"].run(None, {"x": feat})[0],
        "SCORE": steps["ens_score"].run(None, {"a": raw, "b": feat})[0],
        "feat": feat,
    }


def raw_batch(rows: int) -> np.ndarray:
    return rng.normal(size=(rows, 4)).astype(np.float32)


def test_http_metadata_and_config(ens_server):
    c = httpclient.InferenceServerClient(ens_server.http_url)
    meta = c.get_model_metadata("ens_pipeline")
    assert meta["platform"] == "ensemble"
    assert meta["inputs"] == [{"name": "RAW", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["PROBS", "SCORE"]
    config = c.get_model_config("ens_pipeline")
    assert config["platform"] == "ensemble"
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == STEPS
    assert steps[2]["input_map"] == {"a": "RAW", "b": "FEAT"}
    assert c.is_model_ready("ens_pipeline")
    c.close()


def test_grpc_metadata_and_config(ens_server):
    c = grpcclient.InferenceServerClient(ens_server.grpc_url)
    meta = c.get_model_metadata("ens_pipeline", as_json=True)
    assert meta["platform"] == "ensemble"
    assert [i["name"] for i in meta["inputs"]] == ["RAW"]
    config = c.get_model_config("ens_pipeline", as_json=True)["config"]
    assert config["platform"] == "ensemble"
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == STEPS
    assert steps[1]["output_map"] == {"probs": "PROBS"}
    assert c.is_model_ready("ens_pipeline")
    c.close()


@pytest.mark.parametrize("binary", [True, False])
def test_http_infer_matches_steps_many_times_interleaved(ens_server, steps, binary):
    c = httpclient.InferenceServerClient(ens_server.http_url, concurrency=8)
    pending = []
    for i in range(24):
        raw = raw_batch(1 + i % 5)
        inp = httpclient.InferInput("RAW", list(raw.shape), "FP32")
        inp.set_data_from_numpy(raw, binary_data=binary)
        outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("PROBS", "SCORE")]
        pending.append(("ens", raw, c.async_infer("ens_pipeline", [inp], outputs=outs)))
        # A direct request to a step model between the ensemble's requests.
        x = expected(steps, raw)["feat"]
        direct = httpclient.InferInput("x", list(x.shape), "FP32")
        direct.set_data_from_numpy(x, binary_data=binary)
        pending.append(("clf", raw, c.async_infer("ens_clf", [direct])))
    for kind, raw, req in pending:
        result = req.get_result(timeout=60)
        want = expected(steps, raw)
        if kind == "ens":
            rtol_close(result.as_numpy("PROBS"), want["PROBS"])
            rtol_close(result.as_numpy("SCORE"), want["SCORE"])
        else:
            rtol_close(result.as_numpy("probs"), want["PROBS"])
    c.close()


def test_grpc_infer_matches_steps(ens_server, steps):
    c = grpcclient.InferenceServerClient(ens_server.grpc_url)
    for rows in (1, 3, 8):
        raw = raw_batch(rows)
        inp = grpcclient.InferInput("RAW", list(raw.shape), "FP32")
        inp.set_data_from_numpy(raw)
        for _ in range(5):
            result = c.infer("ens_pipeline", [inp])
            want = expected(steps, raw)
            rtol_close(result.as_numpy("PROBS"), want["PROBS"])
            rtol_close(result.as_numpy("SCORE"), want["SCORE"])
    # More rows than the ensemble's max_batch_size (8): refused, naming the limit.
    raw = raw_batch(9)
    inp = grpcclient.InferInput("RAW", list(raw.shape), "FP32")
    inp.set_data_from_numpy(raw)
    with pytest.raises(InferenceServerException) as ei:
        c.infer("ens_pipeline", [inp])
    assert ei.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "max_batch_size" in (ei.value.message() or "")
    c.close()
