"""KServe v2 / Triton gRPC conformance (inference.GRPCInferenceService), through
tritonclient.grpc and, for what that client never sends (typed `contents`), its raw stub."""

from __future__ import annotations

import queue
import threading

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import support
from support import rtol_close

MLP = "digits_mlp"
EXTENSIONS = {"binary_tensor_data", "model_configuration", "model_repository", "statistics"}
NOT_FOUND = "StatusCode.NOT_FOUND"
INVALID = "StatusCode.INVALID_ARGUMENT"
UNAVAILABLE = "StatusCode.UNAVAILABLE"

rng = np.random.default_rng(20260525)
RESULT_WAIT_S = 60


def digits(batch: int) -> np.ndarray:
    return rng.uniform(0.0, 16.0, size=(batch, 64)).astype(np.float32)


def _inp(x, name="input", dt="FP32"):
    i = grpcclient.InferInput(name, list(x.shape), dt)
    i.set_data_from_numpy(x)
    return i


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


@pytest.fixture(scope="module")
def stub(server):
    ch = grpc.insecure_channel(server.grpc_url)
    grpc.channel_ready_future(ch).result(timeout=30)
    yield service_pb2_grpc.GRPCInferenceServiceStub(ch)
    ch.close()


# ---------------------------------------------------------------- health and metadata


def test_server_live_and_ready(grpc_client):
    assert grpc_client.is_server_live() is True
    # `broken` never loads, so the server is not ready (strict readiness).
    assert grpc_client.is_server_ready() is False


def test_server_metadata(grpc_client):
    md = grpc_client.get_server_metadata()
    assert md.name and md.version
    missing = EXTENSIONS - set(md.extensions)
    assert not missing, f"extensions missing: {missing}"


@pytest.mark.parametrize("version", ["", "1"])
def test_model_metadata(grpc_client, version):
    md = grpc_client.get_model_metadata(MLP, model_version=version)
    assert md.name == MLP
    assert "1" in md.versions
    assert md.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("input", "FP32", [-1, 64])]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.outputs] == [
        ("logits", "FP32", [-1, 10])
    ]


def test_model_metadata_as_json(grpc_client):
    md = grpc_client.get_model_metadata(MLP, as_json=True)
    assert md["name"] == MLP
    assert [int(d) for d in md["inputs"][0]["shape"]] == [-1, 64]


@pytest.mark.parametrize("version", ["", "1"])
def test_model_ready(grpc_client, version):
    assert grpc_client.is_model_ready(MLP, model_version=version) is True


def test_model_not_ready(grpc_client):
    for name, version in ((MLP, "7"), ("no_such_model", ""), (support.BROKEN_MODEL, "")):
        try:
            ready = grpc_client.is_model_ready(name, model_version=version)
        except InferenceServerException as e:  # Triton answers unknown models with an error
            assert name in e.message(), e.message()
            continue
        assert ready is False, (name, version)


@pytest.mark.parametrize("version", ["", "1"])
def test_model_config(grpc_client, version):
    cfg = grpc_client.get_model_config(MLP, model_version=version).config
    assert cfg.name == MLP
    assert cfg.max_batch_size == 64
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("input", [64])]
    assert cfg.input[0].data_type == grpcclient.model_config_pb2.TYPE_FP32
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("logits", [10])]


def test_model_config_unbatched_and_priorities(grpc_client):
    cfg = grpc_client.get_model_config("digits_fixed").config
    assert cfg.max_batch_size == 0
    assert list(cfg.input[0].dims) == [1, 64]
    cfg = grpc_client.get_model_config("digits_prio").config
    assert cfg.dynamic_batching.priority_levels == 2
    assert cfg.dynamic_batching.default_priority_level == 2
    as_json = grpc_client.get_model_config("digits_prio", as_json=True)
    assert as_json["config"]["name"] == "digits_prio"


def test_model_config_unknown(grpc_client):
    expect_error(lambda: grpc_client.get_model_config("no_such_model"), NOT_FOUND, "no_such_model")


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize("batch", [1, 4])
def test_infer_digits_mlp(grpc_client, reference, batch):
    x = digits(batch)
    r = grpc_client.infer(MLP, [_inp(x)], outputs=[grpcclient.InferRequestedOutput("logits")],
                          request_id=f"b{batch}")
    got = r.as_numpy("logits")
    assert got.dtype == np.float32 and got.shape == (batch, 10)
    rtol_close(got, reference.run(MLP, {"input": x})["logits"])
    resp = r.get_response()
    assert resp.model_name == MLP and resp.model_version == "1" and resp.id == f"b{batch}"


def test_infer_with_version_and_default_outputs(grpc_client, reference):
    x = digits(3)
    r = grpc_client.infer(MLP, [_inp(x)], model_version="1")
    rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


def test_infer_digits_cnn(grpc_client, reference):
    x = rng.uniform(0, 16, size=(5, 1, 8, 8)).astype(np.float32)
    r = grpc_client.infer("digits_cnn", [_inp(x)])
    rtol_close(r.as_numpy("logits"), reference.run("digits_cnn", {"input": x})["logits"])


def test_infer_mobilenet(grpc_client, reference):
    x = rng.standard_normal(size=(2, 3, 224, 224)).astype(np.float32)
    r = grpc_client.infer("mobilenet_v2", [_inp(x)])
    got, want = r.as_numpy("logits"), reference.run("mobilenet_v2", {"input": x})["logits"]
    rtol_close(got, want)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_infer_unbatched_model(grpc_client, reference):
    x = digits(1)
    r = grpc_client.infer("digits_fixed", [_inp(x)])
    rtol_close(r.as_numpy("logits"), reference.run("digits_fixed", {"input": x})["logits"])


@pytest.mark.parametrize("requested", [None, ["sum"], ["diff"], ["diff", "sum"]],
                         ids=["all", "sum", "diff", "both"])
def test_requested_output_subsets(grpc_client, requested):
    a = rng.standard_normal((2, 4)).astype(np.float32)
    b = rng.standard_normal((2, 4)).astype(np.float32)
    outs = [grpcclient.InferRequestedOutput(n) for n in requested] if requested else None
    r = grpc_client.infer("multi_io", [_inp(a, "a"), _inp(b, "b")], outputs=outs)
    resp = r.get_response()
    names = [o.name for o in resp.outputs]
    want = requested or ["sum", "diff"]
    assert sorted(names) == sorted(want)
    if requested:
        assert names == requested
    assert len(resp.raw_output_contents) == len(names)
    expected = {"sum": a + b, "diff": a - b}
    for n in want:
        rtol_close(r.as_numpy(n), expected[n])


def test_infer_datatypes(grpc_client):
    arrays = {
        "x_fp16": rng.standard_normal((2, 3)).astype(np.float16),
        "x_fp64": rng.standard_normal((2, 3)),
        "x_i64": np.array([[-(2**62), 0, 2**62], [1, -1, 7]], dtype=np.int64),
        "x_i32": np.array([[-(2**31), 0, 2**31 - 1], [1, -1, 7]], dtype=np.int32),
        "x_u8": np.array([[0, 128, 255], [1, 2, 3]], dtype=np.uint8),
        "x_bool": np.array([[True, False, True], [False, False, True]]),
    }
    ins = [_inp(arrays[n], n, dt) for n, _, dt, _, _ in support.TYPED]
    r = grpc_client.infer("types_id", ins)
    for n, _, dt, _, npdt in support.TYPED:
        got = r.as_numpy("y" + n[1:])
        assert got.dtype == npdt
        np.testing.assert_array_equal(got, arrays[n], err_msg=f"{n} ({dt})")


def test_infer_typed_contents(stub, reference):
    """Typed `contents` (fp32_contents) instead of raw_input_contents: other KServe clients
    send this. The response may use either form."""
    x = digits(2)
    req = service_pb2.ModelInferRequest(model_name=MLP, id="typed")
    t = req.inputs.add(name="input", datatype="FP32", shape=[2, 64])
    t.contents.fp32_contents.extend(x.flatten().tolist())
    resp = stub.ModelInfer(req, timeout=RESULT_WAIT_S)
    (o,) = resp.outputs
    assert o.name == "logits" and list(o.shape) == [2, 10]
    if resp.raw_output_contents:
        got = np.frombuffer(resp.raw_output_contents[0], "<f4")
    else:
        got = np.array(o.contents.fp32_contents, np.float32)
    rtol_close(got.reshape(2, 10), reference.run(MLP, {"input": x})["logits"])
    assert resp.id == "typed"


def test_typed_contents_errors(stub):
    def call(req):
        with pytest.raises(grpc.RpcError) as ei:
            stub.ModelInfer(req, timeout=RESULT_WAIT_S)
        return ei.value

    # FP16 has no typed field.
    req = service_pb2.ModelInferRequest(model_name="types_id")
    t = req.inputs.add(name="x_fp16", datatype="FP16", shape=[1, 3])
    t.contents.fp32_contents.extend([0.0, 1.0, 2.0])
    e = call(req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "x_fp16" in e.details()
    # Data in the wrong typed field (int_contents for FP32).
    req = service_pb2.ModelInferRequest(model_name=MLP)
    t = req.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    t.contents.int_contents.extend([1] * 64)
    e = call(req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    # Element count that does not match the shape.
    req = service_pb2.ModelInferRequest(model_name=MLP)
    t = req.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    t.contents.fp32_contents.extend([1.0] * 63)
    e = call(req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    # Both raw and typed data.
    req = service_pb2.ModelInferRequest(model_name=MLP)
    t = req.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    t.contents.fp32_contents.extend([1.0] * 64)
    req.raw_input_contents.append(np.zeros(64, np.float32).tobytes())
    e = call(req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    # Raw bytes of the wrong size.
    req = service_pb2.ModelInferRequest(model_name=MLP)
    req.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    req.raw_input_contents.append(b"\0" * 100)
    e = call(req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "256" in e.details() or "100" in e.details(), e.details()
    # More raw entries than inputs.
    req = service_pb2.ModelInferRequest(model_name=MLP)
    req.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    req.raw_input_contents.extend([np.zeros(64, np.float32).tobytes()] * 2)
    e = call(req)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e


def test_async_infer(grpc_client, reference):
    done: queue.Queue = queue.Queue()
    xs = [digits(1 + k % 4) for k in range(8)]
    for k, x in enumerate(xs):
        grpc_client.async_infer(MLP, [_inp(x)], partial_cb(done, k), request_id=str(k),
                                client_timeout=RESULT_WAIT_S)
    got = {}
    for _ in xs:
        k, result, error = done.get(timeout=RESULT_WAIT_S)
        assert error is None, error
        got[k] = result
    for k, x in enumerate(xs):
        assert got[k].get_response().id == str(k)
        rtol_close(got[k].as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


def partial_cb(q, key):
    return lambda result, error: q.put((key, result, error))


def test_stream_infer(server, reference):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    done: queue.Queue = queue.Queue()
    try:
        client.start_stream(callback=lambda result, error: done.put((result, error)),
                            stream_timeout=RESULT_WAIT_S * 2)
        xs = {f"s{k}": digits(1 + k % 3) for k in range(6)}
        for rid, x in xs.items():
            client.async_stream_infer(MLP, [_inp(x)], request_id=rid)
        # An error in the middle must come back on the stream and leave it usable.
        client.async_stream_infer("no_such_model", [_inp(digits(1))], request_id="bad")
        client.async_stream_infer(MLP, [_inp(xs["s0"])], request_id="after")
        results, errors = {}, []
        for _ in range(len(xs) + 2):
            result, error = done.get(timeout=RESULT_WAIT_S)
            if error is not None:
                errors.append(error)
            else:
                results[result.get_response().id] = result
        assert len(errors) == 1, [e.message() for e in errors]
        assert "no_such_model" in errors[0].message()
        assert set(results) == set(xs) | {"after"}
        for rid, x in xs.items():
            rtol_close(results[rid].as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])
        rtol_close(results["after"].as_numpy("logits"), results["s0"].as_numpy("logits"))
    finally:
        client.stop_stream()
        client.close()


def test_stream_infer_concurrent_streams(server):
    """Two streams at once, each getting its own responses."""
    clients = [grpcclient.InferenceServerClient(server.grpc_url) for _ in range(2)]
    queues = [queue.Queue() for _ in clients]
    try:
        for c, q in zip(clients, queues):
            c.start_stream(callback=lambda result, error, q=q: q.put((result, error)),
                           stream_timeout=120)
        n = 10
        for k in range(n):
            for j, c in enumerate(clients):
                c.async_stream_infer(MLP, [_inp(digits(1))], request_id=f"c{j}-{k}")
        for j, q in enumerate(queues):
            ids = set()
            for _ in range(n):
                r, e = q.get(timeout=RESULT_WAIT_S)
                assert e is None, e
                ids.add(r.get_response().id)
            assert ids == {f"c{j}-{k}" for k in range(n)}
    finally:
        for c in clients:
            c.stop_stream()
            c.close()


def test_priorities(grpc_client, reference):
    x = digits(2)
    want = reference.run("digits_prio", {"input": x})["logits"]
    for p in (0, 1, 2):
        rtol_close(grpc_client.infer("digits_prio", [_inp(x)], priority=p).as_numpy("logits"), want)


def test_priority_out_of_range_uses_default(grpc_client, reference):
    x = digits(1)
    for model, p in (("digits_prio", 3), ("digits_mlp", 5)):
        r = grpc_client.infer(model, [_inp(x)], priority=p)
        rtol_close(r.as_numpy("logits"), reference.run(model, {"input": x})["logits"])


def test_queue_full_is_unavailable(grpc_client):
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    done: queue.Queue = queue.Queue()
    n = 16
    for k in range(n):
        grpc_client.async_infer("mobilenet_q", [_inp(x)], partial_cb(done, k),
                                client_timeout=120)
    ok, full = 0, []
    for _ in range(n):
        _, result, error = done.get(timeout=120)
        if error is None:
            ok += 1
        else:
            assert error.status() == UNAVAILABLE, f"{error.status()}: {error.message()}"
            full.append(error.message())
    assert ok >= 1
    assert full, "16 concurrent requests against max_queue_size 2 never hit the bound"
    assert all("max_queue_size" in m for m in full), full[:2]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compression(grpc_client, reference, algorithm):
    """grpc message compression, which Triton's C++ gRPC server accepts."""
    x = digits(2)
    r = grpc_client.infer(MLP, [_inp(x)], compression_algorithm=algorithm)
    rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


def test_custom_request_parameters_and_headers(grpc_client, reference):
    x = digits(1)
    r = grpc_client.infer(MLP, [_inp(x)], parameters={"tag": "abc", "n": 3, "flag": True},
                          headers={"x-request-tag": "conformance"})
    rtol_close(r.as_numpy("logits"), reference.run(MLP, {"input": x})["logits"])


def test_versions(grpc_client, reference):
    x = digits(2)
    md = grpc_client.get_model_metadata("versioned_all")
    assert sorted(md.versions) == ["1", "2"]
    for v in ("1", "2"):
        r = grpc_client.infer("versioned_all", [_inp(x)], model_version=v)
        assert r.get_response().model_version == v
        rtol_close(r.as_numpy("logits"), reference.run("versioned_all", {"input": x}, v)["logits"])
    assert grpc_client.infer("versioned_all", [_inp(x)]).get_response().model_version == "2"
    assert list(grpc_client.get_model_metadata("versioned_latest").versions) == ["2"]
    expect_error(lambda: grpc_client.infer("versioned_latest", [_inp(x)], model_version="1"),
                 NOT_FOUND, "versioned_latest")


# ---------------------------------------------------------------- statistics and repository


def _stats(client, model):
    (s,) = [m for m in client.get_inference_statistics(model).model_stats if m.version == "1"]
    return s


def test_statistics_increase(grpc_client):
    model = "digits_cnn"
    before = _stats(grpc_client, model)
    x = rng.uniform(0, 16, size=(3, 1, 8, 8)).astype(np.float32)
    for _ in range(2):
        grpc_client.infer(model, [_inp(x)])
    after = _stats(grpc_client, model)
    assert after.inference_count == before.inference_count + 6
    assert after.execution_count >= before.execution_count + 1
    assert after.inference_stats.success.count == before.inference_stats.success.count + 2
    assert after.inference_stats.success.ns > before.inference_stats.success.ns
    assert after.last_inference > 0
    as_json = grpc_client.get_inference_statistics(model, as_json=True)
    assert as_json["model_stats"][0]["name"] == model


def test_statistics_all_and_unknown(grpc_client):
    names = {m.name for m in grpc_client.get_inference_statistics().model_stats}
    assert {MLP, "digits_cnn"} <= names
    expect_error(lambda: grpc_client.get_inference_statistics("no_such_model"), NOT_FOUND,
                 "no_such_model")


def test_repository_index(grpc_client):
    idx = {m.name: m for m in grpc_client.get_model_repository_index().models}
    for m in (MLP, "digits_cnn", "mobilenet_v2"):
        assert idx[m].state == "READY" and idx[m].version == "1", idx[m]
    b = idx[support.BROKEN_MODEL]
    assert b.state == "UNAVAILABLE"
    assert "onnx" in b.reason.lower(), b


def test_unload_and_load(grpc_client, reference):
    model = "digits_cnn"
    x = rng.uniform(0, 16, size=(2, 1, 8, 8)).astype(np.float32)
    try:
        grpc_client.unload_model(model)
        assert support.wait_until(lambda: not grpc_client.is_model_ready(model), 30)
        idx = {m.name: m for m in grpc_client.get_model_repository_index().models}
        assert idx[model].state == "UNAVAILABLE"
        e = expect_error(lambda: grpc_client.infer(model, [_inp(x)]), None, model)
        assert e.status() in (NOT_FOUND, UNAVAILABLE), e.status()
    finally:
        grpc_client.load_model(model)
    assert grpc_client.is_model_ready(model)
    r = grpc_client.infer(model, [_inp(x)])
    rtol_close(r.as_numpy("logits"), reference.run(model, {"input": x})["logits"])


def test_load_broken_model_fails(grpc_client):
    expect_error(lambda: grpc_client.load_model(support.BROKEN_MODEL), None, "onnx")
    assert grpc_client.is_model_ready(support.BROKEN_MODEL) is False


def test_load_unknown_model_fails(fresh_server):
    c = grpcclient.InferenceServerClient(fresh_server.grpc_url)
    try:
        assert c.is_server_ready()
        e = expect_error(lambda: c.load_model("ghost_model"), None, "ghost_model")
        assert e.status() in (NOT_FOUND, INVALID), e.status()
        names = {m.name for m in c.get_model_repository_index().models}
        assert "ghost_model" not in names, "phantom index entry after a failed load"
        expect_error(lambda: c.get_model_metadata("ghost_model"), NOT_FOUND, "ghost_model")
        assert c.is_server_ready(), "a failed load of an unknown model made the server not ready"
    finally:
        c.close()


def test_accepted_socket_has_tcp_nodelay(server, grpc_client):
    """gRPC responses are several small writes (headers, data, trailers); without TCP_NODELAY
    Nagle holds the later ones until the client's delayed ACK (~40 ms)."""
    import socket

    assert grpc_client.is_server_live()  # the client's connection is open now
    try:
        values = support.server_socket_option(server.proc.pid, server.grpc_port,
                                              socket.IPPROTO_TCP, socket.TCP_NODELAY)
    except (OSError, AttributeError) as e:
        pytest.skip(f"cannot inspect the server's sockets here: {e}")
    assert values, "no established gRPC connection found"
    assert all(values), f"TCP_NODELAY on accepted gRPC sockets: {values}"


# ---------------------------------------------------------------- errors


def test_error_unknown_model(grpc_client):
    expect_error(lambda: grpc_client.infer("no_such_model", [_inp(digits(1))]), NOT_FOUND,
                 "no_such_model")
    expect_error(lambda: grpc_client.get_model_metadata("no_such_model"), NOT_FOUND,
                 "no_such_model")


def test_error_unknown_version(grpc_client):
    expect_error(lambda: grpc_client.infer(MLP, [_inp(digits(1))], model_version="7"),
                 NOT_FOUND, MLP, "7")


def test_error_wrong_input_name(grpc_client):
    expect_error(lambda: grpc_client.infer(MLP, [_inp(digits(1), name="inputs")]), INVALID,
                 "inputs")


def test_error_wrong_datatype(grpc_client):
    x = digits(1).astype(np.float64)
    expect_error(lambda: grpc_client.infer(MLP, [_inp(x, dt="FP64")]), INVALID, "FP32", "FP64")


def test_error_missing_batch_dim(grpc_client):
    expect_error(lambda: grpc_client.infer(MLP, [_inp(digits(1).reshape(64))]), INVALID,
                 "max_batch_size")


def test_error_batch_above_max(grpc_client):
    expect_error(lambda: grpc_client.infer(MLP, [_inp(digits(65))]), INVALID, "64")


def test_error_missing_input(grpc_client):
    a = np.zeros((1, 4), np.float32)
    expect_error(lambda: grpc_client.infer("multi_io", [_inp(a, "a")]), INVALID, "'b'")


def test_error_unknown_output(grpc_client):
    outs = [grpcclient.InferRequestedOutput("probabilities")]
    expect_error(lambda: grpc_client.infer(MLP, [_inp(digits(1))], outputs=outs), INVALID,
                 "probabilities")


def test_error_broken_model(grpc_client):
    e = expect_error(lambda: grpc_client.infer(support.BROKEN_MODEL, [_inp(digits(1))]),
                     UNAVAILABLE, support.BROKEN_MODEL)
    assert "onnx" in e.message().lower()


@support.known_bug("grpc-too-large-code")
def test_error_message_too_large(small_server):
    c = grpcclient.InferenceServerClient(small_server.grpc_url)
    try:
        e = expect_error(lambda: c.infer(MLP, [_inp(np.zeros((32, 64), np.float32))]))
        # gRPC's own code for a message over the receive limit (what Triton's C++ server and
        # LRAI's error table use).
        assert e.status() == "StatusCode.RESOURCE_EXHAUSTED", f"{e.status()}: {e.message()}"
        assert c.infer(MLP, [_inp(digits(1))]).as_numpy("logits").shape == (1, 10)
    finally:
        c.close()


def test_concurrent_threads_share_a_client(server, reference):
    """Several threads sharing one client: responses stay matched to requests."""
    c = grpcclient.InferenceServerClient(server.grpc_url)
    errors = []

    def worker(seed):
        r = np.random.default_rng(seed)
        for _ in range(10):
            x = r.uniform(0, 16, size=(int(r.integers(1, 5)), 64)).astype(np.float32)
            try:
                got = c.infer(MLP, [_inp(x)], client_timeout=RESULT_WAIT_S).as_numpy("logits")
                rtol_close(got, reference_lock_run(reference, x))
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=RESULT_WAIT_S * 2)
    c.close()
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not errors, errors[:3]


_ref_lock = threading.Lock()


def reference_lock_run(reference, x):
    with _ref_lock:
        return reference.run(MLP, {"input": x})["logits"]


def test_server_survives(server, grpc_client):
    assert server.alive()
    assert grpc_client.infer(MLP, [_inp(digits(1))]).as_numpy("logits").shape == (1, 10)
