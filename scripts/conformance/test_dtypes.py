"""Every datatype through every conversion, with Triton's own clients, on the backend the
suite runs (LRAI_TEST_BACKEND): tritonclient.http with JSON and binary tensors in every
combination, tritonclient.grpc (raw contents), the raw gRPC stub with typed contents,
batched requests, values at the edges of every range (dtype_models.edge_values). The
models are Identity per datatype, so every answer must equal its request bit for bit;
ONNX Runtime in this process checks the reference once. Requests run several times,
concurrently with others carrying different values."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

import support
from dtype_models import DATATYPES, binary_strings, bf16_values, edge_values, same

ROUNDS = 3
WAIT_S = 60


def value_sets(skip: str = "") -> list[dict[str, np.ndarray]]:
    """The edge values, and the same reversed, so that an answer carrying another
    request's values shows."""
    a = {n: v for n, v in edge_values().items() if n != skip}
    return [a, {n: v[::-1].copy() for n, v in a.items()}]


def http_inputs(values: dict, binary: bool, batch: bool = False) -> list:
    ins = []
    for n, v in values.items():
        x = v.reshape(-1, 1) if batch else v
        i = httpclient.InferInput(f"x_{n}", list(x.shape), DATATYPES[n])
        # FP16 may not travel in request JSON (Triton's rule): binary always.
        i.set_data_from_numpy(x, binary_data=binary or n == "float16")
        ins.append(i)
    return ins


def check(result, values: dict, what: str, batch: bool = False) -> None:
    for n, v in values.items():
        same(result.as_numpy(f"y_{n}"), v.reshape(-1, 1) if batch else v, f"{what} y_{n}")


def test_reference_is_identity(reference):
    """ONNX Runtime in Python answers the edge values with themselves (strings as str)."""
    feeds = {f"x_{n}": v for n, v in edge_values().items()}
    feeds["x_string"] = np.array([b.decode() for b in edge_values()["string"]], dtype=np.object_)
    out = reference.run("dtypes", feeds)
    for n, v in edge_values().items():
        same(out[f"y_{n}"], v, f"reference y_{n}")


@pytest.mark.parametrize("binary_in,binary_out", [(False, False), (True, True), (False, True),
                                                  (True, False)])
def test_http_every_dtype_json_and_binary(http_client, binary_in, binary_out):
    for r in range(ROUNDS):
        pending = []
        for k, values in enumerate(value_sets()):
            outs = [httpclient.InferRequestedOutput(f"y_{n}", binary_data=binary_out)
                    for n in values]
            pending.append((k, values, http_client.async_infer(
                "dtypes", http_inputs(values, binary_in), outputs=outs)))
        for k, values, req in pending:
            check(req.get_result(timeout=WAIT_S), values, f"round {r} set {k}")


def test_grpc_raw_every_dtype(grpc_client):
    """tritonclient.grpc (raw_input_contents), both sets at once from threads, 3 rounds."""
    def call(values):
        ins = []
        for n, v in values.items():
            i = grpcclient.InferInput(f"x_{n}", list(v.shape), DATATYPES[n])
            i.set_data_from_numpy(v)
            ins.append(i)
        return grpc_client.infer("dtypes", ins, client_timeout=WAIT_S)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for r in range(ROUNDS):
            sets = value_sets()
            for k, (values, res) in enumerate(zip(sets, pool.map(call, sets))):
                check(res, values, f"grpc round {r} set {k}")


def typed_request(model: str, values: dict) -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name=model)
    for n, v in values.items():
        t = req.inputs.add(name=f"x_{n}", datatype=DATATYPES[n], shape=list(v.shape))
        field = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                 "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                 "UINT16": "uint_contents", "UINT32": "uint_contents",
                 "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
                 "BYTES": "bytes_contents"}[DATATYPES[n]]
        getattr(t.contents, field).extend(v.tolist())
    return req


def raw_outputs(resp) -> dict[str, np.ndarray]:
    """A ModelInferResponse's raw outputs as arrays (BYTES: Triton's length prefixes)."""
    out = {}
    for o, raw in zip(resp.outputs, resp.raw_output_contents):
        if o.datatype == "BYTES":
            items, at = [], 0
            while at < len(raw):
                size = int.from_bytes(raw[at:at + 4], "little")
                items.append(raw[at + 4:at + 4 + size])
                at += 4 + size
            arr = np.array(items + [None], dtype=np.object_)[:-1]
        elif o.datatype == "BOOL":
            arr = np.frombuffer(raw, np.bool_)
        else:
            arr = np.frombuffer(raw, np.dtype(triton_to_np_dtype(o.datatype)).newbyteorder("<"))
        out[o.name] = arr.reshape(list(o.shape))
    return out


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_url)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def test_grpc_typed_contents_every_dtype(stub):
    """Typed `contents` (no FP16: they have no field for it, so `dtypes_typed` goes without)."""
    for r in range(ROUNDS):
        futures = [(k, values, stub.ModelInfer.future(typed_request("dtypes_typed", values),
                                                      timeout=WAIT_S))
                   for k, values in enumerate(value_sets(skip="float16"))]
        for k, values, f in futures:
            got = raw_outputs(f.result())
            for n, v in values.items():
                same(got[f"y_{n}"], v, f"typed round {r} set {k} y_{n}")


def test_batched_requests_split_back_exactly(http_client):
    """16 requests of 1 to 8 rows at once, JSON and binary: the batcher joins them into
    batches of up to 32 rows and every request gets its own rows back."""
    sets = value_sets()
    pending = []
    for i in range(16):
        rows = 1 + i % 8
        values = {n: v[:rows] for n, v in sets[i % 2].items()}
        binary = i % 3 != 0
        outs = [httpclient.InferRequestedOutput(f"y_{n}", binary_data=binary) for n in values]
        pending.append((i, values, http_client.async_infer(
            "dtypes_batch", http_inputs(values, binary, batch=True), outputs=outs)))
    for i, values, req in pending:
        check(req.get_result(timeout=WAIT_S), values, f"batch request {i}", batch=True)


def test_json_nan_and_infinity_as_triton_writes_them(server):
    """Bare NaN/Infinity/-Infinity (and Inf/-Inf) in request JSON are read as Triton reads
    them, and written back the same way, which Python's json reads."""
    values = {n: v for n, v in edge_values().items() if n != "float16"}
    doc = {"inputs": [{"name": f"x_{n}", "datatype": DATATYPES[n], "shape": list(v.shape),
                       "data": [x.decode() for x in v] if n == "string" else v.tolist()}
                      for n, v in values.items()]}
    text = json.dumps(doc)  # Python writes NaN, Infinity, -Infinity
    assert "NaN" in text and "-Infinity" in text
    # rapidjson's shorter spellings, which Triton also reads (in the FP32 input).
    text = text.replace("Infinity, -Infinity, NaN, 0.1", "Inf, -Inf, NaN, 0.1")
    assert "Inf, -Inf" in text
    resp = support.post_json(f"{server.base}/v2/models/dtypes_typed/infer", text.encode())
    assert resp.status == 200, resp.body[:300]
    body = resp.body.decode()
    assert "Infinity" in body and "-Infinity" in body and "NaN" in body and "null" not in body
    outs = {o["name"]: o for o in json.loads(body)["outputs"]}
    for n, v in values.items():
        got = outs[f"y_{n}"]["data"]
        got = np.array([s.encode() for s in got], np.object_) if n == "string" else np.array(got, v.dtype)
        same(got, v, f"json y_{n}")


def test_binary_strings(http_client, grpc_client, stub):
    """BYTES that are not UTF-8: ONNX Runtime returns them byte for byte; tract refuses them
    with a 400-class error naming the input, and serves the next request."""
    strings = binary_strings()
    values = dict(edge_values(), string=strings)
    typed = {n: v for n, v in values.items() if n != "float16"}
    ins = http_inputs(values, binary=True)
    grpc_ins = []
    for n, v in values.items():
        i = grpcclient.InferInput(f"x_{n}", list(v.shape), DATATYPES[n])
        i.set_data_from_numpy(v)
        grpc_ins.append(i)
    calls = {
        "http": (lambda: http_client.infer("dtypes", ins), "400"),
        "grpc": (lambda: grpc_client.infer("dtypes", grpc_ins), "StatusCode.INVALID_ARGUMENT"),
    }
    for _ in range(2):
        for what, (call, invalid) in calls.items():
            if support.backend() == "tract":
                with pytest.raises(InferenceServerException) as ei:
                    call()
                assert ei.value.status() == invalid, (what, ei.value)
                assert "x_string" in ei.value.message(), (what, ei.value)
                assert "element 1 of a BYTES input is not valid UTF-8" in ei.value.message()
            else:
                check(call(), values, what)
        if support.backend() == "tract":
            with pytest.raises(grpc.RpcError) as ei:
                stub.ModelInfer(typed_request("dtypes_typed", typed), timeout=WAIT_S)
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value
        else:
            got = raw_outputs(stub.ModelInfer(typed_request("dtypes_typed", typed), timeout=WAIT_S))
            same(got["y_string"], strings, "typed y_string")
            # JSON can't carry them back: a clear 400, never altered bytes.
            outs = [httpclient.InferRequestedOutput("y_string", binary_data=False)]
            with pytest.raises(InferenceServerException) as ei:
                http_client.infer("dtypes", ins, outputs=outs)
            assert ei.value.status() == "400", ei.value
            assert "not valid UTF-8, which JSON cannot carry" in ei.value.message()
    # The model still serves ordinary strings.
    check(http_client.infer("dtypes", http_inputs(edge_values(), binary=True)), edge_values(),
          "after")


def test_bf16(server, http_client, grpc_client):
    """BF16 on ONNX Runtime through both clients (ml_dtypes.bfloat16, as tritonclient
    wants); on tract the model is UNAVAILABLE and the index says why."""
    if support.backend() == "tract":
        idx = {m["name"]: m for m in http_client.get_model_repository_index()}
        assert idx["bf16_id"]["state"] == "UNAVAILABLE", idx["bf16_id"]
        assert "tract does not support datatype BF16" in idx["bf16_id"]["reason"], idx["bf16_id"]
    else:
        x = bf16_values()
        for _ in range(2):
            i = httpclient.InferInput("x", list(x.shape), "BF16")
            i.set_data_from_numpy(x, binary_data=True)
            same(http_client.infer("bf16_id", [i]).as_numpy("y"), x, "http bf16")
            g = grpcclient.InferInput("x", list(x.shape), "BF16")
            g.set_data_from_numpy(x)
            same(grpc_client.infer("bf16_id", [g]).as_numpy("y"), x, "grpc bf16")
        # BF16 in request JSON is refused, as Triton does.
        doc = {"inputs": [{"name": "x", "datatype": "BF16", "shape": [1], "data": [1.0]}]}
        resp = support.post_json(f"{server.base}/v2/models/bf16_id/infer", doc)
        assert resp.status == 400
        assert "receiving BF16 data via JSON is not supported" in resp.error()
