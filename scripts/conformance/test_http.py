"""KServe v2 / Triton HTTP conformance, through tritonclient.http and raw urllib."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import support
from support import http_request, post_binary, post_json, rtol_close, split_binary_response

MLP = "digits_mlp"
EXTENSIONS = {"binary_tensor_data", "model_configuration", "model_repository", "statistics"}

rng = np.random.default_rng(20260524)


def digits(batch: int) -> np.ndarray:
    return rng.uniform(0.0, 16.0, size=(batch, 64)).astype(np.float32)


def infer_mlp(client, x, binary_in=True, binary_out=True, **kw):
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary_out)
    return client.infer(kw.pop("model", MLP), [inp], outputs=[out], **kw)


def expect_error(fn, status: str | None = None, *fragments: str) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as ei:
        fn()
    e = ei.value
    msg = e.message() or ""
    if status is not None:
        assert e.status() == status, f"status {e.status()!r} != {status!r}: {msg}"
    for f in fragments:
        assert f.lower() in msg.lower(), f"{f!r} not in error message {msg!r}"
    return e


def raw_error(resp, status: int, *fragments: str) -> str:
    assert resp.status == status, f"HTTP {resp.status} != {status}: {resp.body[:400]!r}"
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    msg = resp.error()
    for f in fragments:
        assert f.lower() in msg.lower(), f"{f!r} not in error message {msg!r}"
    return msg


# ---------------------------------------------------------------- health and metadata


def test_server_live(http_client, server):
    assert http_client.is_server_live()
    assert http_request(f"{server.base}/v2/health/live").status == 200


def test_server_not_ready_while_a_model_failed(http_client, server):
    # Triton's strict readiness: every model in the repository must be READY; `broken` is not.
    assert http_client.is_server_ready() is False
    assert http_request(f"{server.base}/v2/health/ready").status == 503


def test_server_metadata(http_client):
    md = http_client.get_server_metadata()
    assert md["name"]
    assert md["version"]
    missing = EXTENSIONS - set(md["extensions"])
    assert not missing, f"extensions missing: {missing} (got {md['extensions']})"


@pytest.mark.parametrize("version", ["", "1"])
def test_model_metadata(http_client, version):
    md = http_client.get_model_metadata(MLP, model_version=version)
    assert md["name"] == MLP
    assert "1" in md["versions"]
    assert md["platform"] == "onnxruntime_onnx"
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert md["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]


def test_model_metadata_unbatched(http_client):
    md = http_client.get_model_metadata("digits_fixed")
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [1, 64]}]
    assert md["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [1, 10]}]


def test_model_metadata_types(http_client):
    md = http_client.get_model_metadata("types_id")
    got = {t["name"]: (t["datatype"], t["shape"]) for t in md["inputs"]}
    want = {n: (dt, [-1, 3]) for n, _, dt, _, _ in support.TYPED}
    assert got == want


@pytest.mark.parametrize("version", ["", "1"])
def test_model_ready(http_client, version):
    assert http_client.is_model_ready(MLP, model_version=version) is True


def test_model_not_ready(http_client, server):
    assert http_client.is_model_ready(MLP, model_version="7") is False
    assert http_client.is_model_ready("no_such_model") is False
    assert http_client.is_model_ready(support.BROKEN_MODEL) is False
    assert http_request(f"{server.base}/v2/models/{support.BROKEN_MODEL}/ready").status != 200


@pytest.mark.parametrize("version", ["", "1"])
def test_model_config(http_client, version):
    cfg = http_client.get_model_config(MLP, model_version=version)
    assert cfg["name"] == MLP
    assert cfg["max_batch_size"] == 64
    assert [(i["name"], i["data_type"], list(map(int, i["dims"]))) for i in cfg["input"]] == [
        ("input", "TYPE_FP32", [64])
    ]
    assert [(o["name"], o["data_type"], list(map(int, o["dims"]))) for o in cfg["output"]] == [
        ("logits", "TYPE_FP32", [10])
    ]


def test_model_config_unbatched_and_priorities(http_client):
    cfg = http_client.get_model_config("digits_fixed")
    assert cfg.get("max_batch_size", 0) == 0
    assert list(map(int, cfg["input"][0]["dims"])) == [1, 64]
    cfg = http_client.get_model_config("digits_prio")
    db = cfg["dynamic_batching"]
    assert int(db["priority_levels"]) == 2
    assert int(db["default_priority_level"]) == 2


def test_model_config_unknown(http_client):
    expect_error(lambda: http_client.get_model_config("no_such_model"), "404", "no_such_model")


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize("batch", [1, 4, 64])
@pytest.mark.parametrize("binary_in", [False, True], ids=["json_in", "bin_in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json_out", "bin_out"])
def test_infer_digits_mlp(http_client, reference, batch, binary_in, binary_out):
    x = digits(batch)
    r = infer_mlp(http_client, x, binary_in, binary_out)
    got = r.as_numpy("logits")
    assert got.dtype == np.float32
    rtol_close(got, reference.run(MLP, {"input": x})["logits"])
    resp = r.get_response()
    assert resp["model_name"] == MLP
    assert resp["model_version"] == "1"
    (o,) = resp["outputs"]
    assert o["name"] == "logits" and o["datatype"] == "FP32" and o["shape"] == [batch, 10]
    if binary_out:
        assert o["parameters"]["binary_data_size"] == batch * 10 * 4
        assert "data" not in o
    else:
        assert len(o["data"]) == batch * 10


def test_infer_default_outputs_and_version(http_client, reference):
    # No `outputs` in the request: every output comes back; explicit version 1.
    x = digits(2)
    inp = httpclient.InferInput("input", [2, 64], "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    r = http_client.infer(MLP, [inp], model_version="1", request_id="req-42")
    rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])
    assert r.get_response()["id"] == "req-42"


def test_infer_json_nested_data(server, reference):
    # KServe allows nested (row-major) JSON arrays for `data`.
    x = digits(2)
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 64], "data": x.tolist()}]}
    resp = post_json(f"{server.base}/v2/models/{MLP}/infer", doc)
    assert resp.status == 200, resp.body[:300]
    out = resp.json()["outputs"][0]
    got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
    rtol_close(got, reference.run(MLP, {"input": x})["logits"])


def test_infer_binary_data_output_request_parameter(server, reference):
    # Request-level "binary_data_output": true makes every output binary.
    x = digits(1)
    hdr = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                    "parameters": {"binary_data_size": 256}}],
        "parameters": {"binary_data_output": True},
    }
    resp = post_binary(f"{server.base}/v2/models/{MLP}/infer", hdr, [x.tobytes()])
    assert resp.status == 200, resp.body[:300]
    doc, rest = split_binary_response(resp)
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 40
    got = np.frombuffer(rest, dtype="<f4").reshape(1, 10)
    rtol_close(got, reference.run(MLP, {"input": x})["logits"])


def test_infer_raw_binary_request(server, reference):
    # Inference-Header-Content-Length: 0 -> the body is the single input's bytes, batch 1.
    x = digits(1)
    resp = http_request(f"{server.base}/v2/models/{MLP}/infer", "POST", x.tobytes(),
                        {"Inference-Header-Content-Length": "0",
                         "Content-Type": "application/octet-stream"})
    assert resp.status == 200, resp.body[:300]
    doc, rest = split_binary_response(resp)
    (o,) = doc["outputs"]
    assert o["shape"] == [1, 10]
    got = np.frombuffer(rest[: o["parameters"]["binary_data_size"]], dtype="<f4").reshape(1, 10)
    rtol_close(got, reference.run(MLP, {"input": x})["logits"])


def test_infer_digits_cnn(http_client, reference):
    x = rng.uniform(0, 16, size=(3, 1, 8, 8)).astype(np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    r = http_client.infer("digits_cnn", [inp])
    rtol_close(r.as_numpy("logits"), reference.run("digits_cnn", {"input": x})["logits"])


def test_infer_mobilenet(http_client, reference):
    x = rng.standard_normal(size=(1, 3, 224, 224)).astype(np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    r = http_client.infer("mobilenet_v2", [inp],
                          outputs=[httpclient.InferRequestedOutput("logits")])
    got = r.as_numpy("logits")
    want = reference.run("mobilenet_v2", {"input": x})["logits"]
    rtol_close(got, want)
    assert got.argmax() == want.argmax()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_unbatched_model(http_client, reference, binary):
    x = digits(1)
    r = infer_mlp(http_client, x, binary, binary, model="digits_fixed")
    assert r.as_numpy("logits").shape == (1, 10)
    rtol_close(r.as_numpy("logits"), reference.run("digits_fixed", {"input": x})["logits"])


@pytest.mark.parametrize(
    "requested", [None, ["sum"], ["diff"], ["diff", "sum"]], ids=["all", "sum", "diff", "both"]
)
def test_requested_output_subsets(http_client, requested):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    ins = []
    for name, v in (("a", a), ("b", b)):
        i = httpclient.InferInput(name, [3, 4], "FP32")
        i.set_data_from_numpy(v, binary_data=(name == "a"))  # mixed JSON and binary inputs
        ins.append(i)
    outs = None
    if requested:
        # First requested output binary, the rest JSON: per-output binary_data.
        outs = [httpclient.InferRequestedOutput(n, binary_data=(k == 0))
                for k, n in enumerate(requested)]
    r = http_client.infer("multi_io", ins, outputs=outs)
    names = [o["name"] for o in r.get_response()["outputs"]]
    want = requested or ["sum", "diff"]
    assert sorted(names) == sorted(want)
    if requested:
        assert names == requested, "outputs should come back in the requested order"
    expected = {"sum": a + b, "diff": a - b}
    for n in want:
        rtol_close(r.as_numpy(n), expected[n])


def test_infer_datatypes(http_client):
    n = 2
    arrays = {
        "x_fp16": rng.standard_normal((n, 3)).astype(np.float16),
        "x_fp64": rng.standard_normal((n, 3)),
        "x_i64": np.array([[-(2**62), 0, 2**62], [1, -1, 7]], dtype=np.int64),
        "x_i32": np.array([[-(2**31), 0, 2**31 - 1], [1, -1, 7]], dtype=np.int32),
        "x_u8": np.array([[0, 128, 255], [1, 2, 3]], dtype=np.uint8),
        "x_bool": np.array([[True, False, True], [False, False, True]]),
    }
    for binary_out in (True, False):
        ins = []
        for name, _, dt, _, _ in support.TYPED:
            i = httpclient.InferInput(name, [n, 3], dt)
            # FP16 can't travel in JSON; everything else alternates JSON/binary.
            i.set_data_from_numpy(arrays[name], binary_data=(dt == "FP16" or not binary_out))
            ins.append(i)
        outs = [httpclient.InferRequestedOutput("y" + name[1:], binary_data=(binary_out or dt == "FP16"))
                for name, _, dt, _, _ in support.TYPED]
        r = http_client.infer("types_id", ins, outputs=outs)
        for name, _, dt, _, npdt in support.TYPED:
            got = r.as_numpy("y" + name[1:])
            assert got.dtype == npdt, (name, got.dtype)
            np.testing.assert_array_equal(got, arrays[name], err_msg=f"{name} ({dt})")


def test_async_infer(http_client, reference):
    xs = [digits(1 + k % 3) for k in range(8)]
    reqs = [http_client.async_infer(MLP, [_inp(x)]) for x in xs]
    for x, req in zip(xs, reqs):
        r = req.get_result(timeout=60)
        rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


def _inp(x, name="input", dt="FP32", binary=True):
    i = httpclient.InferInput(name, list(x.shape), dt)
    i.set_data_from_numpy(x, binary_data=binary)
    return i


def test_priorities(http_client, reference):
    x = digits(2)
    want = reference.run("digits_prio", {"input": x})["logits"]
    for p in (0, 1, 2):  # 0 = the model's default level
        r = http_client.infer("digits_prio", [_inp(x)], priority=p)
        rtol_close(r.as_numpy("logits"), want)


def test_priority_out_of_range_uses_default(http_client, reference):
    """Triton maps a priority of 0 or above priority_levels to default_priority_level."""
    x = digits(1)
    for model, p in (("digits_prio", 3), ("digits_mlp", 5)):
        r = http_client.infer(model, [_inp(x)], priority=p)
        rtol_close(r.as_numpy("logits"), reference.run(model, {"input": x})["logits"])


def test_queue_full_is_503(server):
    """max_queue_size 2 on a slow model: a burst of 24 simultaneous requests (OS threads,
    released together) gets some 503s that name the limit and carry Retry-After; the rest
    succeed; nothing hangs."""
    import concurrent.futures as cf
    import threading

    x = np.zeros((1, 3, 224, 224), dtype=np.float32).tobytes()
    url = f"{server.base}/v2/models/mobilenet_q/infer"
    hdr = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                       "parameters": {"binary_data_size": len(x)}}]}
    n = 24
    barrier = threading.Barrier(n, timeout=30)

    def one(_):
        barrier.wait()
        return post_binary(url, hdr, [x])

    with cf.ThreadPoolExecutor(n) as pool:
        resps = list(pool.map(one, range(n), timeout=120))
    statuses = [r.status for r in resps]
    assert all(s in (200, 503) for s in statuses), statuses
    assert 200 in statuses, statuses
    rejected = [r for r in resps if r.status == 503]
    assert rejected, f"{n} simultaneous requests against max_queue_size 2 never hit the bound"
    for r in rejected:
        raw_error(r, 503, "max_queue_size")
        assert "retry-after" in r.headers, r.headers


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_request_compression(http_client, reference, algorithm):
    """Content-Encoding on the request (Triton decompresses before reading the
    Inference-Header-Content-Length, which counts uncompressed bytes)."""
    x = digits(2)
    r = http_client.infer(MLP, [_inp(x)], request_compression_algorithm=algorithm)
    rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_response_compression(http_client, reference, algorithm):
    """Accept-Encoding on the request: the server may compress; the client must cope."""
    x = digits(2)
    r = http_client.infer(MLP, [_inp(x)], response_compression_algorithm=algorithm)
    rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


def test_custom_request_parameters(http_client, reference):
    # The `parameters` extension: unknown request parameters are carried, not rejected.
    x = digits(1)
    r = http_client.infer(MLP, [_inp(x)], parameters={"tag": "abc", "n": 3, "flag": True})
    rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


def test_versions_policy_all(http_client, reference):
    """version_policy all: both versions served; no version picks the highest."""
    model = "versioned_all"
    md = http_client.get_model_metadata(model)
    assert sorted(md["versions"]) == ["1", "2"]
    x = digits(2)
    want = {v: reference.run(model, {"input": x}, v)["logits"] for v in ("1", "2")}
    assert np.abs(want["1"] - want["2"]).max() > 1e-2, "the two versions must differ"
    for v in ("1", "2"):
        assert http_client.is_model_ready(model, model_version=v)
        assert http_client.get_model_metadata(model, model_version=v)["name"] == model
        r = infer_mlp(http_client, x, model=model, model_version=v)
        assert r.get_response()["model_version"] == v
        rtol_close(r.as_numpy("logits"), want[v])
    r = infer_mlp(http_client, x, model=model)
    assert r.get_response()["model_version"] == "2"
    rtol_close(r.as_numpy("logits"), want["2"])
    stats = http_client.get_inference_statistics(model)["model_stats"]
    assert sorted(s["version"] for s in stats) == ["1", "2"]


def test_versions_policy_latest(http_client, reference):
    """Default policy (latest 1): only version 2 is served."""
    model = "versioned_latest"
    assert http_client.get_model_metadata(model)["versions"] == ["2"]
    assert http_client.is_model_ready(model, model_version="2") is True
    assert http_client.is_model_ready(model, model_version="1") is False
    x = digits(1)
    r = infer_mlp(http_client, x, model=model)
    assert r.get_response()["model_version"] == "2"
    rtol_close(r.as_numpy("logits"), reference.run(model, {"input": x}, "2")["logits"])
    expect_error(lambda: infer_mlp(http_client, x, model=model, model_version="1"), "404",
                 model)
    idx = [m for m in http_client.get_model_repository_index()
           if m["name"] == model and m.get("version") == "2"]
    assert idx and idx[0]["state"] == "READY", idx


# ---------------------------------------------------------------- statistics and metrics


def _stats(client, model):
    (s,) = [m for m in client.get_inference_statistics(model)["model_stats"] if m["version"] == "1"]
    return s


def test_statistics_increase(http_client):
    model = "digits_cnn"  # not shared with the concurrency tests
    before = _stats(http_client, model)
    x = rng.uniform(0, 16, size=(2, 1, 8, 8)).astype(np.float32)
    for _ in range(3):
        http_client.infer(model, [_inp(x)])
    after = _stats(http_client, model)
    assert after["name"] == model
    assert int(after["inference_count"]) == int(before["inference_count"]) + 6
    assert int(after["execution_count"]) >= int(before["execution_count"]) + 1
    ok_b, ok_a = before["inference_stats"]["success"], after["inference_stats"]["success"]
    assert int(ok_a["count"]) == int(ok_b["count"]) + 3
    assert int(ok_a["ns"]) > int(ok_b["ns"])
    assert int(after["last_inference"]) > 0
    assert any(int(b["batch_size"]) == 2 for b in after["batch_stats"]), after["batch_stats"]


def test_statistics_rejected_request_not_counted(http_client):
    model = "digits_cnn"
    # A request that decodes but fails the model's shape check adds no inferences.
    before = _stats(http_client, model)
    bad = httpclient.InferInput("input", [1, 64], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 64), np.float32))
    with pytest.raises(InferenceServerException):
        http_client.infer(model, [bad])
    after = _stats(http_client, model)
    assert int(after["inference_count"]) == int(before["inference_count"])


def test_statistics_all_models_and_unknown(http_client):
    names = {m["name"] for m in http_client.get_inference_statistics()["model_stats"]}
    assert {MLP, "digits_cnn", "mobilenet_v2"} <= names
    assert support.BROKEN_MODEL not in names
    expect_error(lambda: http_client.get_inference_statistics("no_such_model"), "404",
                 "no_such_model")


def _metric(server, name, model):
    text = http_request(server.metrics).body.decode()
    pat = re.compile(r"^" + re.escape(name) + r"\{([^}]*)\}\s+([0-9.eE+-]+)$", re.M)
    total = 0.0
    for labels, value in pat.findall(text):
        if f'model="{model}"' in labels:
            total += float(value)
    return total


def test_prometheus_metrics(server, http_client):
    resp = http_request(server.metrics)
    assert resp.status == 200
    assert resp.headers.get("content-type", "").startswith("text/plain")
    before = _metric(server, "nv_inference_request_success", MLP)
    infer_mlp(http_client, digits(1))
    assert support.wait_until(
        lambda: _metric(server, "nv_inference_request_success", MLP) >= before + 1, 10)
    assert "nv_inference_count" in resp.body.decode()


# ---------------------------------------------------------------- repository


def test_repository_index(http_client):
    idx = {m["name"]: m for m in http_client.get_model_repository_index()}
    for m in (MLP, "digits_cnn", "mobilenet_v2", "digits_fixed"):
        assert idx[m]["state"] == "READY", idx[m]
        assert idx[m]["version"] == "1"
    b = idx[support.BROKEN_MODEL]
    assert b["state"] == "UNAVAILABLE"
    assert "onnx" in b.get("reason", "").lower(), b


def test_repository_index_ready_only(server):
    resp = post_json(f"{server.base}/v2/repository/index", {"ready": True})
    assert resp.status == 200
    names = {m["name"] for m in resp.json()}
    assert MLP in names and support.BROKEN_MODEL not in names


def test_unload_and_load(http_client, reference):
    model = "digits_cnn"
    x = rng.uniform(0, 16, size=(1, 1, 8, 8)).astype(np.float32)
    try:
        http_client.unload_model(model)
        assert support.wait_until(lambda: not http_client.is_model_ready(model), 30)
        idx = {m["name"]: m for m in http_client.get_model_repository_index()}
        assert idx[model]["state"] == "UNAVAILABLE", idx[model]
        e = expect_error(lambda: http_client.infer(model, [_inp(x)]), None, model)
        assert e.status() in ("404", "503"), e.status()
    finally:
        http_client.load_model(model)
    assert http_client.is_model_ready(model)
    r = http_client.infer(model, [_inp(x)])
    rtol_close(r.as_numpy("logits"), reference.run(model, {"input": x})["logits"])


def test_unload_with_requests_in_flight(server, http_client):
    """Unloading while requests run: every request ends (no hang) with 200 or a clean 404/503;
    requests already executing complete; loading again serves."""
    import concurrent.futures as cf

    model = "mobilenet_v2"
    x = rng.standard_normal((8, 3, 224, 224)).astype(np.float32)
    hdr = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                       "parameters": {"binary_data_size": x.nbytes}}]}
    url = f"{server.base}/v2/models/{model}/infer"
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            futs = [pool.submit(post_binary, url, hdr, [x.tobytes()]) for _ in range(4)]
            # Wait (bounded) until the server has accepted at least one of them.
            support.wait_until(lambda: _metric(server, "nv_inference_pending_request_count",
                                               model) > 0
                               or _metric(server, "lrai_inflight_requests", model) > 0, 10, 0.01)
            http_client.unload_model(model)
            resps = [f.result(timeout=120) for f in futs]
        for r in resps:
            if r.status != 200:
                raw_error(r, r.status, model)
                assert r.status in (404, 503), (r.status, r.body[:200])
        assert any(r.status == 200 for r in resps), [r.status for r in resps]
        assert not http_client.is_model_ready(model)
    finally:
        http_client.load_model(model)
    assert http_client.is_model_ready(model)


def test_graceful_shutdown(tmp_path):
    """SIGTERM: accepted in-flight requests finish with 200; new ones are refused (503 or
    connection refused); the process exits 0 within bounds."""
    import concurrent.futures as cf
    import os
    import signal

    repo = tmp_path / "models"
    support.build_small_repository(repo, ("mobilenet_v2",))
    srv = support.start_server(repo, tmp_path / "server.log", ["mobilenet_v2"])
    try:
        x = rng.standard_normal((8, 3, 224, 224)).astype(np.float32)
        hdr = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                           "parameters": {"binary_data_size": x.nbytes}}]}
        url = f"{srv.base}/v2/models/mobilenet_v2/infer"
        with cf.ThreadPoolExecutor(3) as pool:
            futs = [pool.submit(post_binary, url, hdr, [x.tobytes()]) for _ in range(3)]
            # All three decoded and accepted (the gauge counts from after body decoding).
            assert support.wait_until(
                lambda: _metric(srv, "lrai_inflight_requests", "mobilenet_v2") >= 3, 20, 0.01), (
                "the requests never became in flight together")
            os.killpg(srv.proc.pid, signal.SIGTERM)
            resps = [f.result(timeout=120) for f in futs]
        assert [r.status for r in resps] == [200] * 3, [(r.status, r.body[:200]) for r in resps]
        try:
            late = post_binary(url, hdr, [x.tobytes()])
            assert late.status == 503, (late.status, late.body[:200])
        except OSError:
            pass  # listener already closed
        rc = srv.proc.wait(timeout=60)
        assert rc == 0, f"exit status {rc}:\n{srv.log_tail()}"
    finally:
        support.stop_server(srv)


def test_load_broken_model_fails(http_client):
    e = expect_error(lambda: http_client.load_model(support.BROKEN_MODEL), None, "onnx")
    assert e.status() in ("400", "500", "503"), e.status()
    assert http_client.is_model_ready(support.BROKEN_MODEL) is False


def test_load_unknown_model_fails(fresh_server):
    """Loading a model the repository doesn't have fails with 404 and changes nothing: no
    phantom index entry, the name stays unknown (404, not 503), the server stays ready."""
    base = fresh_server.base
    assert http_request(f"{base}/v2/health/ready").status == 200
    c = httpclient.InferenceServerClient(fresh_server.http_url, network_timeout=60.0)
    try:
        e = expect_error(lambda: c.load_model("ghost_model"), None, "ghost_model")
        assert e.status() in ("400", "404"), e.status()
        m = re.search(r"\(models: ([^)]*)\)", e.message())
        if m:
            assert "ghost_model" not in m.group(1).split(", "), (
                f"the error lists the missing model as available: {e.message()}")
        names = {x["name"] for x in c.get_model_repository_index()}
        assert "ghost_model" not in names, f"phantom index entry: {c.get_model_repository_index()}"
        raw_error(http_request(f"{base}/v2/models/ghost_model"), 404, "ghost_model")
        assert http_request(f"{base}/v2/health/ready").status == 200, (
            "a failed load of an unknown model made the server not ready")
    finally:
        c.close()


def test_load_with_config_override_is_a_clean_error(http_client):
    """LRAI refuses load-time config/file overrides by design (uploading configuration
    through an API is how inference servers were taken over); it must say so with a 400,
    not a crash or a silent ignore."""
    e = expect_error(lambda: http_client.load_model("digits_mlp", config='{"max_batch_size": 8}'),
                     None, "refused")
    assert e.status() == "400", e.status()
    assert http_client.is_model_ready("digits_mlp")


# ---------------------------------------------------------------- errors via tritonclient


def test_error_unknown_model(http_client, server):
    expect_error(lambda: infer_mlp(http_client, digits(1), model="no_such_model"), "404",
                 "no_such_model")
    expect_error(lambda: http_client.get_model_metadata("no_such_model"), "404", "no_such_model")
    raw_error(http_request(f"{server.base}/v2/models/no_such_model"), 404, "no_such_model")


def test_error_unknown_version(http_client):
    expect_error(lambda: infer_mlp(http_client, digits(1), model_version="7"), "404", MLP, "7")
    expect_error(lambda: http_client.get_model_metadata(MLP, model_version="7"), "404", "7")


def test_error_non_numeric_version(server):
    resp = http_request(f"{server.base}/v2/models/{MLP}/versions/latest")
    assert resp.status in (400, 404), resp.status
    assert "latest" in resp.error()


def test_error_wrong_input_name(http_client):
    x = digits(1)
    expect_error(lambda: http_client.infer(MLP, [_inp(x, name="inputs")]), "400", "inputs")


def test_error_wrong_datatype(http_client):
    x = digits(1).astype(np.float64)
    expect_error(lambda: http_client.infer(MLP, [_inp(x, dt="FP64")]), "400", "FP32", "FP64")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_error_missing_batch_dim(http_client, binary):
    x = digits(1).reshape(64)
    expect_error(lambda: http_client.infer(MLP, [_inp(x, binary=binary)]), "400",
                 "max_batch_size")


def test_error_batch_above_max(http_client):
    x = digits(65)
    e = expect_error(lambda: http_client.infer(MLP, [_inp(x)]), "400", "64")
    assert "max_batch_size" in e.message() or "batch" in e.message().lower()


def test_error_wrong_inner_shape(http_client):
    x = np.zeros((2, 32), np.float32)
    expect_error(lambda: http_client.infer(MLP, [_inp(x)]), "400", "[2,32]")


def test_error_missing_input(http_client):
    a = np.zeros((1, 4), np.float32)
    expect_error(lambda: http_client.infer("multi_io", [_inp(a, name="a")]), "400", "'b'")


def test_error_unknown_output(http_client):
    out = httpclient.InferRequestedOutput("probabilities")
    expect_error(lambda: http_client.infer(MLP, [_inp(digits(1))], outputs=[out]), "400",
                 "probabilities")


def test_error_broken_model_infer(http_client, server):
    e = expect_error(lambda: infer_mlp(http_client, digits(1), model=support.BROKEN_MODEL),
                     "503", support.BROKEN_MODEL)
    assert "onnx" in e.message().lower(), e.message()


# ---------------------------------------------------------------- errors via raw HTTP


def _url(server, model=MLP):
    return f"{server.base}/v2/models/{model}/infer"


def _json_doc(x, dt="FP32", name="input"):
    return {"inputs": [{"name": name, "datatype": dt, "shape": list(x.shape),
                        "data": x.flatten().tolist()}]}


def test_raw_unknown_model_404(server):
    raw_error(post_json(_url(server, "no_such_model"), _json_doc(digits(1))), 404,
              "no_such_model")


def test_raw_broken_model_503(server):
    raw_error(post_json(_url(server, support.BROKEN_MODEL), _json_doc(digits(1))), 503,
              support.BROKEN_MODEL, "onnx")


def test_raw_fp16_in_json(server):
    doc = _json_doc(digits(1), dt="FP16")
    msg = raw_error(post_json(_url(server), doc), 400)
    assert "json" in msg.lower() and "binary" in msg.lower(), msg
    # Same on an FP16 model.
    doc = {"inputs": [{"name": n, "datatype": dt, "shape": [1, 3], "data": [0, 1, 1]}
                      for n, _, dt, _, _ in support.TYPED]}
    msg = raw_error(post_json(_url(server, "types_id"), doc), 400, "x_fp16")
    assert "json" in msg.lower() and "binary" in msg.lower(), msg


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs":[{"name":"input"',
        b"",
        b"[]",
        b"null",
        b'{"inputs": 5}',
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":"abc"}]}',
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":"1x64","data":[1]}]}',
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[1,2,3]}]}',
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,-64],"data":[1]}]}',
        b'{"inputs":[{"name":"input","datatype":"NOPE","shape":[1,64],"data":[1]}]}',
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64]}]}',
        b'{"inputs":[{"datatype":"FP32","shape":[1,64],"data":[1]}]}',
        b"\xff\xfe\x00garbage",
        b'{"inputs":[]}x',
    ],
    ids=["truncated", "empty", "array", "null", "inputs-number", "data-string", "shape-string",
         "too-few-values", "negative-dim", "bad-datatype", "no-data", "no-name", "not-utf8",
         "trailing"],
)
def test_raw_malformed_json(server, body):
    raw_error(post_json(_url(server), body), 400)
    assert server.alive()


def test_raw_json_value_out_of_range(server):
    doc = {"inputs": [{"name": n, "datatype": dt, "shape": [1, 3],
                       "data": [300, 0, 1] if dt == "UINT8" else [0, 1, 1]}
                      for n, _, dt, _, _ in support.TYPED if dt != "FP16"]}
    raw_error(post_json(_url(server, "types_id"), doc), 400, "300")


def test_raw_duplicate_input(server):
    x = digits(1)
    doc = _json_doc(x)
    doc["inputs"] = doc["inputs"] * 2
    raw_error(post_json(_url(server), doc), 400, "input")


def _bin_header(size, shape=(1, 64), **params):
    hdr = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(shape),
                       "parameters": {"binary_data_size": size}}]}
    hdr.update(params)
    return hdr


def test_raw_binary_sizes_that_do_not_add_up(server):
    x = digits(1).tobytes()  # 256 bytes
    url = _url(server)
    # Fewer bytes follow the header than binary_data_size says.
    raw_error(post_binary(url, _bin_header(256), [x[:200]]), 400, "256")
    # More bytes follow than declared.
    raw_error(post_binary(url, _bin_header(256), [x], extra=b"\0" * 4), 400, "256")
    # binary_data_size agrees with the body but not with the shape.
    raw_error(post_binary(url, _bin_header(200), [x[:200]]), 400, "256")
    # Header length longer than the body.
    raw_error(post_binary(url, _bin_header(256), [x], header_len=100000), 400)
    # Header length not a number.
    raw_error(post_binary(url, _bin_header(256), [x], header_len="abc"), 400,
              "Inference-Header-Content-Length")
    # Header length cutting the JSON short.
    raw_error(post_binary(url, _bin_header(256), [x], header_len=20), 400)
    # Negative binary_data_size.
    raw_error(post_binary(url, _bin_header(-256), [x]), 400)
    # Binary bytes follow but no input declares binary_data_size.
    doc = _json_doc(digits(1))
    raw_error(post_binary(url, doc, [x]), 400)
    assert server.alive()


def test_raw_binary_request_with_two_inputs_rejected(server):
    body = np.zeros((1, 4), np.float32).tobytes() * 2
    resp = http_request(_url(server, "multi_io"), "POST", body,
                        {"Inference-Header-Content-Length": "0"})
    msg = raw_error(resp, 400, "multi_io")
    # Triton's wording first (core src/infer_request.cc), LRAI's detail after.
    assert msg.startswith("Raw request must only have 1 input (found 1) to be deduced but got 2 "
                          "inputs in 'multi_io' model configuration"), msg


def test_raw_binary_request_wrong_size(server):
    resp = http_request(_url(server), "POST", b"\0" * 100,
                        {"Inference-Header-Content-Length": "0"})
    msg = raw_error(resp, 400, "256")
    assert msg.startswith("input byte size mismatch for input 'input' for model 'digits_mlp'. "
                          "Expected 256, got 100"), msg


def test_raw_unknown_route_404(server):
    raw_error(http_request(f"{server.base}/v2/does/not/exist"), 404)


def test_raw_body_too_large(small_server):
    url = _url(small_server)
    x = np.zeros((32, 64), np.float32)  # 8 KiB binary > 4 KiB limit
    resp = post_binary(url, _bin_header(x.nbytes, shape=x.shape), [x.tobytes()])
    msg = raw_error(resp, 413)
    assert str(4096) in msg, msg
    # A request under the limit still works on the same server.
    ok = post_binary(url, _bin_header(256), [digits(1).tobytes()])
    assert ok.status == 200, ok.body[:300]


def test_body_too_large_via_tritonclient(small_server):
    c = httpclient.InferenceServerClient(small_server.http_url, network_timeout=60.0)
    try:
        expect_error(lambda: c.infer(MLP, [_inp(np.zeros((32, 64), np.float32))]), "413")
        assert c.infer(MLP, [_inp(digits(1))]).as_numpy("logits").shape == (1, 10)
    finally:
        c.close()


def test_server_survives(server, http_client):
    """Last: after every error above, the server still answers and infers."""
    assert server.alive()
    assert infer_mlp(http_client, digits(1)).as_numpy("logits").shape == (1, 10)

