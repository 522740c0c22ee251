"""Triton's model semantics through tritonclient (HTTP and gRPC), on the backend the
server runs: config.pbtxt `reshape` (a -1 inferred, outputs in the config's dims, a scalar
per row sent as [batch, 1]), models LRAI's implicit warm-up used to make UNAVAILABLE, and
the same requests, repeated and interleaved with others, giving the same answers.
Outputs are compared with ONNX Runtime run in-process on the same files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import support
from support import rtol_close

rng = np.random.default_rng(20261207)

PROTOCOLS = ["http", "grpc"]


def infer(protocol, http_client, grpc_client, model, arrays: dict, datatypes: dict | None = None):
    """One request with `arrays` as inputs (binary on HTTP); the result's outputs by name."""
    lib, client = (httpclient, http_client) if protocol == "http" else (grpcclient, grpc_client)
    inputs = []
    for name, a in arrays.items():
        dt = (datatypes or {}).get(name) or ("BYTES" if a.dtype == np.object_ else "FP32")
        i = lib.InferInput(name, list(a.shape), dt)
        i.set_data_from_numpy(a)
        inputs.append(i)
    r = client.infer(model, inputs)
    names = [o["name"] for o in (r.get_response()["outputs"] if protocol == "http"
                                 else r.get_response(as_json=True)["outputs"])]
    return {n: r.as_numpy(n) for n in names}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reshape_infers_the_variable_size_and_answers_in_the_config_dims(
        protocol, http_client, grpc_client, reference):
    # dims [2,4,-1,6], reshape [8,-1,1,6]: the model sees [N,8,L,1,6], clients [N,2,4,L,6].
    for rows, length in ((1, 5), (3, 2)):
        x = rng.standard_normal((rows, 2, 4, length, 6)).astype(np.float32)
        got = infer(protocol, http_client, grpc_client, "reshape_var", {"x": x})["y"]
        assert got.shape == x.shape
        want = reference.run("reshape_var", {"x": x.reshape(rows, 8, length, 1, 6)})["y"]
        rtol_close(got, want.reshape(x.shape))


def test_reshape_in_the_model_config(http_client):
    cfg = http_client.get_model_config("reshape_var")
    assert cfg["input"][0]["dims"] == [2, 4, -1, 6]
    assert cfg["input"][0]["reshape"] == {"shape": [8, -1, 1, 6]}
    meta = http_client.get_model_metadata("reshape_var")
    assert meta["inputs"][0]["shape"] == [-1, 2, 4, -1, 6]
    assert meta["outputs"][0]["shape"] == [-1, 2, 4, -1, 6]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_scalar_per_row_is_sent_and_answered_as_batch_by_one(
        protocol, http_client, grpc_client, reference):
    s = rng.standard_normal((3, 1)).astype(np.float32)
    got = infer(protocol, http_client, grpc_client, "scalar_row", {"s": s})["y"]
    assert got.shape == (3, 1)
    rtol_close(got, reference.run("scalar_row", {"s": s.reshape(3)})["y"].reshape(3, 1))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_model_that_parses_strings_serves(protocol, http_client, grpc_client, reference):
    # Its implicit warm-up used to feed empty strings, which the Cast refuses ('stoll').
    text = np.array([[b"12", b"-3"], [b"2147483647", b"0"]], dtype=np.object_)
    got = infer(protocol, http_client, grpc_client, "string_cast", {"text": text})["n"]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, reference.run("string_cast", {"text": text.astype(str)})["n"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_free_spatial_dims_are_not_invented_by_the_warm_up(
        protocol, http_client, grpc_client, reference):
    # No config.pbtxt and free H, W: warming up at 1x1 failed the Concat and the model
    # never served; it runs real inputs.
    for shape in ((1, 3, 32, 32), (2, 3, 48, 64)):
        x = rng.standard_normal(shape).astype(np.float32)
        got = infer(protocol, http_client, grpc_client, "upsample_concat", {"images": x})["features"]
        rtol_close(got, reference.run("upsample_concat", {"images": x})["features"])


def test_a_failing_implicit_warm_up_is_logged_and_the_model_serves(server, http_client):
    # upsample_odd's configured dims [3,3,3] can't run (the Concat needs even sizes): the
    # warm-up fails, says so at WARN with the model and the reason, and is skipped.
    assert http_client.is_model_ready("upsample_odd")
    warnings = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("level") == "WARN" and "implicit warm-up" in json.dumps(doc):
            warnings.append(doc)
    assert any(json.dumps(d).find("upsample_odd") >= 0 and "Concat" in json.dumps(d)
               for d in warnings), warnings


def test_no_warm_up_failure_is_logged_for_models_that_were_not_warmed(server):
    # Models whose shapes the warm-up can't know are not warmed at all: nothing fails.
    text = server.log_path.read_text(errors="replace")
    for model in ("string_cast", "upsample_concat", "reshape_var", "scalar_row"):
        bad = [line for line in text.splitlines()
               if "implicit warm-up" in line and f'"{model}"' in line and "WARN" in line]
        assert not bad, bad


def lstm_inputs(seed: int) -> dict:
    r = np.random.default_rng(seed)
    return {
        "x": r.standard_normal((2, 1, 3)).astype(np.float32),
        "h0": r.standard_normal((1, 1, 4)).astype(np.float32),
        "c0": r.standard_normal((1, 1, 4)).astype(np.float32),
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recurrent_state_never_leaks_between_requests(protocol, http_client, grpc_client, reference):
    # The same two requests, four times each, interleaved: every answer is ONNX Runtime's.
    cases = [lstm_inputs(1), lstm_inputs(2)]
    want = [reference.run("lstm_state", c) for c in cases]
    for _ in range(4):
        for c, w in zip(cases, want):
            got = infer(protocol, http_client, grpc_client, "lstm_state", c)
            for name in ("y", "hn", "cn"):
                rtol_close(got[name], w[name])


def test_same_answers_repeated_and_interleaved_across_models(http_client, grpc_client, reference):
    digits = rng.uniform(0.0, 16.0, size=(2, 64)).astype(np.float32)
    x = rng.standard_normal((1, 2, 4, 3, 6)).astype(np.float32)
    text = np.array([[b"5", b"-7"]], dtype=np.object_)
    first = None
    for k in range(4):
        protocol = PROTOCOLS[k % 2]
        got = (
            infer(protocol, http_client, grpc_client, "digits_mlp", {"input": digits})["logits"],
            infer(protocol, http_client, grpc_client, "reshape_var", {"x": x})["y"],
            infer(protocol, http_client, grpc_client, "string_cast", {"text": text})["n"],
        )
        if first is None:
            first = got
            rtol_close(got[0], reference.run("digits_mlp", {"input": digits})["logits"])
        for a, b in zip(got, first):
            np.testing.assert_array_equal(a, b)
