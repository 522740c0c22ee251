"""Scoped bearer tokens and Triton's restricted APIs with Triton's own clients
(tritonclient HTTP and gRPC pass `headers=`): tokens made with `lrai token new`, a token
file served with --auth-file, each role allowed where the table says and refused
elsewhere (401 / UNAUTHENTICATED without a token, 403 / PERMISSION_DENIED without the
right), and --http-restricted-api / --grpc-restricted-api as Triton documents them."""
import json
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import support

DIGITS = support.EXAMPLES / "digits_mlp"


def new_token(auth_file, name, role, models=None) -> str:
    args = [str(support.server_binary()), "token", "new", "--auth-file", str(auth_file),
            "--name", name, "--role", role]
    if models:
        args += ["--models", models]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    token = out.stdout.strip()
    assert token.startswith("lrai_") and len(token) == 69, out
    # The file holds the hash, never the token.
    assert token not in auth_file.read_text()
    return token


def repo_with_two_models(tmp_path):
    repo = tmp_path / "models"
    support.build_small_repository(repo)
    config = (DIGITS / "config.pbtxt").read_text().replace('name: "digits_mlp"', 'name: "other_mlp"')
    support._copy_model("digits_mlp", repo, name="other_mlp", config=config)
    return repo


def wait_ready(srv, headers, models):
    """Bounded wait until `models` are READY (asked with a token that may read)."""
    c = httpclient.InferenceServerClient(srv.http_url)
    for _ in range(int(support.STARTUP_TIMEOUT_S / 0.2)):
        assert srv.alive(), srv.log_tail()
        try:
            if all(c.is_model_ready(m, headers=headers) for m in models):
                return
        except (InferenceServerException, OSError):
            pass  # not listening yet, or the models are still loading
        time.sleep(0.2)
    raise AssertionError(f"models not ready:\n{srv.log_tail()}")


def status_of(call) -> str:
    with pytest.raises(InferenceServerException) as e:
        call()
    return str(e.value.status())


def digits_input(module):
    x = np.random.default_rng(7).random((1, 64), dtype=np.float32)
    inp = module.InferInput("input", [1, 64], "FP32")
    inp.set_data_from_numpy(x)
    return x, inp


@pytest.fixture(scope="module")
def authed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    repo = repo_with_two_models(tmp)
    auth_file = tmp / "tokens.json"
    tokens = {
        "read": new_token(auth_file, "reader", "read"),
        "infer": new_token(auth_file, "ci", "infer", "digits_*"),
        "admin": new_token(auth_file, "ops", "admin"),
    }
    with pytest.raises(subprocess.CalledProcessError) as dup:
        new_token(auth_file, "ci", "read")
    assert "already has a token named 'ci'" in dup.value.stderr
    srv = support.start_server(repo, tmp / "server.log", [],
                               ["--auth-file", str(auth_file), "--auth-allow-health"])
    headers = {k: {"Authorization": f"Bearer {t}"} for k, t in tokens.items()}
    try:
        wait_ready(srv, headers["read"], ["digits_mlp", "other_mlp"])
        yield srv, headers
    finally:
        support.stop_server(srv)


def test_startup_log_says_auth_is_on(authed):
    srv, _ = authed
    log = srv.log_tail(400)
    assert "authentication is on" in log and '"tokens":3' in log.replace(" ", ""), log
    assert "no authentication is configured" not in log


def test_http_roles(authed):
    srv, h = authed
    c = httpclient.InferenceServerClient(srv.http_url)
    # Health stays open for probes (--auth-allow-health); nothing else does.
    assert c.is_server_live() and c.is_server_ready()
    assert status_of(lambda: c.get_model_metadata("digits_mlp")) == "401"
    assert status_of(lambda: c.get_model_metadata("digits_mlp", headers={"Authorization": "Bearer lrai_wrong"})) == "401"
    assert c.get_model_metadata("digits_mlp", headers=h["read"])["name"] == "digits_mlp"
    assert c.get_model_config("other_mlp", headers=h["read"])["name"] == "other_mlp"
    assert status_of(lambda: c.get_model_metadata("digits_mlp", headers=h["infer"])) == "403"
    assert status_of(lambda: c.get_model_repository_index(headers=h["infer"])) == "403"

    x, inp = digits_input(httpclient)
    want = ort.InferenceSession(str(DIGITS / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    out = c.infer("digits_mlp", [inp], headers=h["infer"])
    name = out.get_response()["outputs"][0]["name"]
    np.testing.assert_allclose(out.as_numpy(name), want, rtol=1e-4, atol=1e-5)
    assert status_of(lambda: c.infer("other_mlp", [inp], headers=h["infer"])) == "403"
    assert status_of(lambda: c.infer("digits_mlp", [inp], headers=h["read"])) == "403"
    assert status_of(lambda: c.infer("digits_mlp", [inp])) == "401"

    assert status_of(lambda: c.unload_model("other_mlp", headers=h["infer"])) == "403"
    assert status_of(lambda: c.unload_model("other_mlp", headers=h["read"])) == "403"
    assert c.is_model_ready("other_mlp", headers=h["read"])
    c.unload_model("other_mlp", headers=h["admin"])
    c.load_model("other_mlp", headers=h["admin"])
    assert c.is_model_ready("other_mlp", headers=h["read"])


def test_grpc_roles(authed):
    srv, http_headers = authed
    # gRPC metadata keys are lowercase.
    h = {k: {"authorization": v["Authorization"]} for k, v in http_headers.items()}
    c = grpcclient.InferenceServerClient(srv.grpc_url)
    assert c.is_server_live() and c.is_server_ready()
    assert status_of(lambda: c.get_model_metadata("digits_mlp")) == "StatusCode.UNAUTHENTICATED"
    assert c.get_model_metadata("digits_mlp", headers=h["read"]).name == "digits_mlp"
    assert status_of(lambda: c.get_model_metadata("digits_mlp", headers=h["infer"])) == "StatusCode.PERMISSION_DENIED"
    x, inp = digits_input(grpcclient)
    want = ort.InferenceSession(str(DIGITS / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    out = c.infer("digits_mlp", [inp], headers=h["infer"])
    name = out.get_response().outputs[0].name
    np.testing.assert_allclose(out.as_numpy(name), want, rtol=1e-4, atol=1e-5)
    assert status_of(lambda: c.infer("other_mlp", [inp], headers=h["infer"])) == "StatusCode.PERMISSION_DENIED"
    assert status_of(lambda: c.unload_model("digits_mlp", headers=h["infer"])) == "StatusCode.PERMISSION_DENIED"
    assert status_of(lambda: c.get_model_repository_index()) == "StatusCode.UNAUTHENTICATED"
    assert len(c.get_model_repository_index(headers=h["read"]).models) == 2


def test_metrics_need_read(authed):
    srv, h = authed
    def get(headers):
        try:
            with urllib.request.urlopen(urllib.request.Request(srv.metrics, headers=headers), timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
    assert get({}) == 401
    assert get(h["infer"]) == 403
    assert get(h["read"]) == 200


def test_tritons_restricted_apis(tmp_path):
    repo = repo_with_two_models(tmp_path)
    srv = support.start_server(repo, tmp_path / "server.log", ["digits_mlp"], [
        "--http-restricted-api", "model-repository:admin-key=s3cret",
        "--grpc-restricted-api", "model-repository:admin-key=s3cret",
    ])
    try:
        key = {"admin-key": "s3cret"}
        http = httpclient.InferenceServerClient(srv.http_url)
        grpc = grpcclient.InferenceServerClient(srv.grpc_url)
        with pytest.raises(InferenceServerException) as e:
            http.get_model_repository_index()
        assert "This API is restricted, expecting header 'admin-key'" in str(e.value)
        with pytest.raises(InferenceServerException) as e:
            grpc.get_model_repository_index()
        assert "This API is restricted, expecting header 'admin-key'" in str(e.value)
        assert status_of(lambda: http.unload_model("other_mlp", headers={"admin-key": "nope"})) == "403"
        assert len(http.get_model_repository_index(headers=key)) == 2
        assert len(grpc.get_model_repository_index(headers=key).models) == 2
        http.unload_model("other_mlp", headers=key)
        grpc.load_model("other_mlp", headers=key)
        # model-repository is restricted on both protocols: no warning about open control.
        assert "no authentication is configured" not in srv.log_tail(400)
        # Groups that are not restricted stay open.
        _, inp = digits_input(httpclient)
        assert http.infer("digits_mlp", [inp]).get_response()["outputs"]
        assert http.get_model_metadata("digits_mlp")["name"] == "digits_mlp"
    finally:
        support.stop_server(srv)


def test_control_without_auth_still_warns(tmp_path):
    repo = tmp_path / "models"
    support.build_small_repository(repo)
    srv = support.start_server(repo, tmp_path / "server.log", ["digits_mlp"])
    try:
        log = srv.log_tail(400)
        assert "no authentication is configured" in log, log
        assert "authentication is on" not in log
    finally:
        support.stop_server(srv)
