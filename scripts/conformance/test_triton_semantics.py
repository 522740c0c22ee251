"""Triton's request semantics that go beyond the wire format, checked against what Triton
itself answers (its sources: triton-inference-server/server src/http_server.cc,
src/classification.cc, src/grpc/; core src/infer_request.cc, src/model_repository_manager/):
raw binary requests, the JSON nesting limit, error wording, and the classification
extension, over HTTP (tritonclient.http and raw urllib) and gRPC (tritonclient.grpc)."""

from __future__ import annotations

import json
import struct

import numpy as np

from support import http_request, post_json

MLP = "digits_mlp"
RAW = {"Inference-Header-Content-Length": "0", "Content-Type": "application/octet-stream"}


def _infer_url(server, model):
    return f"{server.base}/v2/models/{model}/infer"


def _error(resp, status):
    assert resp.status == status, f"HTTP {resp.status} != {status}: {resp.body[:400]!r}"
    return resp.error()


def _binary_outputs(resp):
    n = int(resp.headers["inference-header-content-length"])
    return json.loads(resp.body[:n]), resp.body[n:]


def _bytes_elements(raw: bytes) -> list[bytes]:
    """Triton's BYTES serialisation: 4-byte little-endian length, then the bytes."""
    out, i = [], 0
    while i < len(raw):
        (n,) = struct.unpack_from("<I", raw, i)
        out.append(raw[i + 4:i + 4 + n])
        i += 4 + n
    return out


# ---------------------------------------------------------------- raw binary requests


def test_raw_bytes_input_is_the_whole_body(server):
    # No 4-byte length prefix: the body is the element, even when its first 4 bytes read
    # as one (0x0101012a). No NUL inside: ONNX Runtime's string tensors are C strings.
    body = b"\x2a\x01\x01\x01a sentence\nwith \xc3\xa9 inside"
    resp = http_request(_infer_url(server, "text_echo"), "POST", body, RAW)
    assert resp.status == 200, resp.body[:300]
    doc, rest = _binary_outputs(resp)
    (o,) = doc["outputs"]
    assert (o["name"], o["datatype"], o["shape"]) == ("echo", "BYTES", [1, 1])
    assert _bytes_elements(rest) == [body]


def test_raw_bytes_empty_body_is_one_empty_element(server):
    resp = http_request(_infer_url(server, "text_echo"), "POST", b"", RAW)
    assert resp.status == 200, resp.body[:300]
    doc, rest = _binary_outputs(resp)
    assert doc["outputs"][0]["shape"] == [1, 1]
    assert _bytes_elements(rest) == [b""]


def test_raw_bytes_input_must_have_one_element(server):
    resp = http_request(_infer_url(server, "text_any"), "POST", b"hello", RAW)
    msg = _error(resp, 400)
    assert msg.startswith("For BYTE datatype raw input 'text', the model must have input "
                          "shape [1]"), msg


def test_raw_fixed_size_input_still_works(server, reference):
    x = np.arange(64, dtype=np.float32).reshape(1, 64) / 8
    resp = http_request(_infer_url(server, MLP), "POST", x.tobytes(), RAW)
    assert resp.status == 200, resp.body[:300]
    doc, rest = _binary_outputs(resp)
    got = np.frombuffer(rest, dtype="<f4").reshape(doc["outputs"][0]["shape"])
    want = reference.run(MLP, {"input": x})["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- JSON nesting


def _nested_doc(levels: int, x: np.ndarray) -> bytes:
    flat = ",".join(repr(float(v)) for v in x.flatten())
    data = "[" * levels + flat + "]" * levels
    return ('{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":%s}]}'
            % data).encode()


def test_json_nesting_up_to_the_limit_is_read(server, reference):
    x = np.linspace(0, 16, 64, dtype=np.float32).reshape(1, 64)
    # 99 arrays: the values sit at depth 99, the deepest Triton reads.
    resp = post_json(_infer_url(server, MLP), _nested_doc(99, x))
    assert resp.status == 200, resp.body[:300]
    out = resp.json()["outputs"][0]
    got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
    np.testing.assert_allclose(got, reference.run(MLP, {"input": x})["logits"],
                               rtol=1e-3, atol=1e-4)


def test_json_nesting_past_the_limit_is_refused(server):
    x = np.zeros((1, 64), np.float32)
    msg = _error(post_json(_infer_url(server, MLP), _nested_doc(100, x)), 400)
    assert msg.startswith("JSON nesting depth exceeds maximum allowed limit (100)"), msg
    assert "input 'input'" in msg, msg


# ---------------------------------------------------------------- Triton's error wording
#
# Clients and scripts match on the start of Triton's messages; LRAI's detail follows.


def _http_error(fn) -> tuple[str, str]:
    import pytest
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as ei:
        fn()
    return ei.value.status(), ei.value.message()


def _mlp_input(httpmod, name="input", shape=(1, 64)):
    i = httpmod.InferInput(name, list(shape), "FP32")
    i.set_data_from_numpy(np.zeros(shape, np.float32))
    return i


def test_error_wording_over_http(http_client):
    import tritonclient.http as httpclient

    cases = [
        (lambda: http_client.infer("no_such_model", [_mlp_input(httpclient)]), "404",
         "Request for unknown model: 'no_such_model' is not found"),
        (lambda: http_client.infer(MLP, [_mlp_input(httpclient)], model_version="7"), "404",
         f"Request for unknown model: '{MLP}' version 7 is not found"),
        (lambda: http_client.infer("broken", [_mlp_input(httpclient)]), "503",
         "Request for unknown model: 'broken' has no available versions"),
        (lambda: http_client.infer(MLP, [_mlp_input(httpclient)],
                                   outputs=[httpclient.InferRequestedOutput("probs")]), "400",
         f"unexpected inference output 'probs' for model '{MLP}'"),
        (lambda: http_client.infer(MLP, [_mlp_input(httpclient)],
                                   outputs=[httpclient.InferRequestedOutput("logits")] * 2),
         "400", "output 'logits' already exists in request"),
        (lambda: http_client.infer(MLP, [_mlp_input(httpclient, name="pixels")]), "400",
         f"unexpected inference input 'pixels' for model '{MLP}'"),
    ]
    for fn, status, prefix in cases:
        got_status, msg = _http_error(fn)
        assert got_status == status, (prefix, got_status, msg)
        assert msg.startswith(prefix), f"{msg!r} does not start with {prefix!r}"


def test_error_wording_for_shapes(server):
    big = 2 ** 32
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [big, big], "data": []}]}
    msg = _error(post_json(_infer_url(server, MLP), doc), 400)
    assert msg.startswith(f"invalid shape for input 'input': shape [{big},{big}] causes total "
                          "element count to exceed maximum size of 9223372036854775807"), msg
    # LRAI answers every negative dimension with 400 (Triton's answer varies by path, up to
    # a 500 from its INTERNAL errors): the request is at fault. See docs/protocol.md.
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64], "data": []}]}
    msg = _error(post_json(_infer_url(server, MLP), doc), 400)
    assert msg.startswith("invalid shape for input 'input': shape [-1,64] contains one or more "
                          "invalid dimensions"), msg


def test_error_wording_over_grpc(grpc_client):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    def grpc_error(fn):
        import pytest

        with pytest.raises(InferenceServerException) as ei:
            fn()
        return ei.value.status(), ei.value.message()

    cases = [
        (lambda: grpc_client.infer("no_such_model", [_mlp_input(grpcclient)]),
         "StatusCode.NOT_FOUND", "Request for unknown model: 'no_such_model' is not found"),
        (lambda: grpc_client.infer(MLP, [_mlp_input(grpcclient)], model_version="7"),
         "StatusCode.NOT_FOUND", f"Request for unknown model: '{MLP}' version 7 is not found"),
        (lambda: grpc_client.infer(MLP, [_mlp_input(grpcclient)],
                                   outputs=[grpcclient.InferRequestedOutput("probs")]),
         "StatusCode.INVALID_ARGUMENT", f"unexpected inference output 'probs' for model '{MLP}'"),
        # Triton's ValidateModelName, on the repository API.
        (lambda: grpc_client.load_model("../digits_mlp"), "StatusCode.INVALID_ARGUMENT",
         "invalid model name '../digits_mlp', model name must not contain path traversal "
         "characters"),
        (lambda: grpc_client.load_model(" "), "StatusCode.INVALID_ARGUMENT",
         "Model name cannot be empty. Please enter a valid name to deploy."),
    ]
    for fn, status, prefix in cases:
        got_status, msg = grpc_error(fn)
        assert got_status == status, (prefix, got_status, msg)
        assert msg.startswith(prefix), f"{msg!r} does not start with {prefix!r}"


# ---------------------------------------------------------------- classification extension


def triton_classes(logits: np.ndarray, k: int, labels: list[str], batched: bool) -> list[str]:
    """What Triton returns for class_count=k (server src/classification.cc): per batch row
    (or the whole tensor when the model doesn't batch), the k largest values, highest
    first, equal values by index, as f"{value:f}:{index}" plus ":label" when that line
    of the label file is not empty. Python's "%f" is C's."""
    rows = logits.reshape(logits.shape[0], -1) if batched else logits.reshape(1, -1)
    out = []
    for row in rows:
        for i in sorted(range(row.size), key=lambda j: (-float(row[j]), j))[:k]:
            s = "%f:%d" % (float(row[i]), i)
            if i < len(labels) and labels[i]:
                s += ":" + labels[i]
            out.append(s)
    return out


def _texts(a: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in a.flatten()]


def _labels(server, model):
    return (server.repo / model / "labels.txt").read_text().split("\n")[:-1]


def _cnn_input(mod, batch):
    x = np.random.default_rng(batch).uniform(0, 16, size=(batch, 1, 8, 8)).astype(np.float32)
    i = mod.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    return i


def test_classification_over_http(server, http_client):
    import tritonclient.http as httpclient

    labels = _labels(server, "digits_cnn")
    assert labels[:2] == ["zero", "one"], labels
    for batch in (1, 4):
        inp = _cnn_input(httpclient, batch)
        logits = http_client.infer("digits_cnn", [inp]).as_numpy("logits")
        for k in (1, 3, 10, 15):  # 15 > 10 classes: all of them
            for binary in (True, False):
                out = httpclient.InferRequestedOutput("logits", binary_data=binary, class_count=k)
                r = http_client.infer("digits_cnn", [inp], outputs=[out])
                got = r.as_numpy("logits")
                assert got.shape == (batch, min(k, 10)), (k, got.shape)
                assert r.get_output("logits")["datatype"] == "BYTES"
                assert _texts(got) == triton_classes(logits, k, labels, True), (batch, k, binary)


def test_classification_over_grpc(server, grpc_client):
    import tritonclient.grpc as grpcclient

    labels = _labels(server, "digits_cnn")
    inp = _cnn_input(grpcclient, 3)
    logits = grpc_client.infer("digits_cnn", [inp]).as_numpy("logits")
    for k in (2, 10, 11):
        out = grpcclient.InferRequestedOutput("logits", class_count=k)
        got = grpc_client.infer("digits_cnn", [inp], outputs=[out]).as_numpy("logits")
        assert got.shape == (3, min(k, 10))
        assert _texts(got) == triton_classes(logits, k, labels, True), k


def test_classification_of_a_model_that_does_not_batch(server, http_client, grpc_client):
    """digits_fixed (max_batch_size 0, output [1,10]) is classified whole: shape [k]; its
    label file is shorter than the classes and has an empty line."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from support import FIXED_LABELS

    labels = FIXED_LABELS.split("\n")[:-1]
    x = np.linspace(0, 16, 64, dtype=np.float32).reshape(1, 64)
    for mod, client in ((httpclient, http_client), (grpcclient, grpc_client)):
        i = mod.InferInput("input", [1, 64], "FP32")
        i.set_data_from_numpy(x)
        logits = client.infer("digits_fixed", [i]).as_numpy("logits")
        out = mod.InferRequestedOutput("logits", class_count=10)
        got = client.infer("digits_fixed", [i], outputs=[out]).as_numpy("logits")
        assert got.shape == (10,), got.shape
        want = triton_classes(logits, 10, labels, False)
        assert _texts(got) == want
        assert any(s.count(":") == 1 for s in want) and any(s.count(":") == 2 for s in want)


def test_classification_refusals(server, http_client):
    import tritonclient.http as httpclient

    # A BYTES output has no order.
    i = httpclient.InferInput("text", [1, 1], "BYTES")
    i.set_data_from_numpy(np.array([[b"a"]], dtype=np.object_))
    out = httpclient.InferRequestedOutput("echo", class_count=1)
    status, msg = _http_error(lambda: http_client.infer("text_echo", [i], outputs=[out]))
    assert status == "400", msg
    assert msg.startswith("class result not available for output due to unsupported type "
                          "'BYTES'"), msg
    # A count that is not an unsigned integer.
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}],
           "outputs": [{"name": "logits", "parameters": {"classification": -3}}]}
    msg = _error(post_json(_infer_url(server, MLP), doc), 400)
    assert msg.startswith("Unable to set 'classification': attempt to access JSON "
                          "non-unsigned-integer as unsigned-integer"), msg
