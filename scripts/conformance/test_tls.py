"""TLS with real clients: Triton's tritonclient over HTTPS and gRPC with TLS, and curl over
HTTPS, against `lrai serve --tls-cert --tls-key --tls-client-ca` (mutual TLS), answers checked
against ONNX Runtime; a client certificate from another CA, and none, are refused.
Certificates are made with the openssl command at test time."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import support


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    assert exe, "the openssl command is needed to make the test certificates"
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign", cwd=d)


def _leaf(d: Path, ca: str, name: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _leaf(d, "ca", "server")
    _leaf(d, "ca", "client")
    _ca(d, "stranger-ca")
    _leaf(d, "stranger-ca", "stranger")
    return d


def _context(pki: Path, client: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client:
        ctx.load_cert_chain(str(pki / f"{client}.pem"), str(pki / f"{client}.key"))
    return ctx


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("tls-server")
    repo = d / "models"
    support.build_small_repository(repo)
    ports = [support.free_port() for _ in range(3)]
    log = d / "server.log"
    args = [str(support.server_binary()), "serve", "--model-repository", str(repo),
            "--address", "127.0.0.1", "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
            "--metrics-port", str(ports[2]), "--backend", os.environ.get("LRAI_TEST_BACKEND", "auto"),
            "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
            "--tls-client-ca", str(pki / "ca.pem")]
    env = dict(os.environ)
    lib = support.ort_library()
    if lib and not env.get("LRAI_ORT_LIB"):
        env["LRAI_ORT_LIB"] = lib
    with open(log, "wb") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    srv = support.Server(proc, *ports, repo=repo, log_path=log, backend=os.environ.get("LRAI_TEST_BACKEND", "auto"))
    ctx = _context(pki, "client")
    url = f"https://localhost:{ports[0]}/v2/models/digits_mlp/ready"
    deadline = time.monotonic() + support.STARTUP_TIMEOUT_S
    while True:
        try:
            if urllib.request.urlopen(url, context=ctx, timeout=5).status == 200:
                break
        except OSError:
            pass
        if not srv.alive() or time.monotonic() > deadline:
            support.stop_server(srv)
            pytest.fail(f"the TLS server did not become ready:\n{srv.log_tail()}")
        time.sleep(0.2)
    yield srv
    alive = srv.alive()
    support.stop_server(srv)
    assert alive, f"the TLS server died during the tests:\n{srv.log_tail()}"


def _input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 64), dtype=np.float32)


def _want(srv, x: np.ndarray) -> np.ndarray:
    return support.Reference(srv.repo).run("digits_mlp", {"input": x})["logits"]


def test_tritonclient_https_infer_with_client_certificate(tls_server, pki):
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(
        f"localhost:{tls_server.http_port}", ssl=True,
        ssl_options={"ca_certs": str(pki / "ca.pem"), "certfile": str(pki / "client.pem"),
                     "keyfile": str(pki / "client.key")})
    try:
        assert c.is_server_live()
        for seed in range(5):
            x = _input(seed)
            inp = httpclient.InferInput("input", [1, 64], "FP32")
            inp.set_data_from_numpy(x, binary_data=seed % 2 == 0)
            got = c.infer("digits_mlp", [inp]).as_numpy("logits")
            support.rtol_close(got, _want(tls_server, x))
    finally:
        c.close()


def test_tritonclient_grpc_tls_infer_with_client_certificate(tls_server, pki):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(
        f"localhost:{tls_server.grpc_port}", ssl=True,
        root_certificates=str(pki / "ca.pem"), private_key=str(pki / "client.key"),
        certificate_chain=str(pki / "client.pem"))
    try:
        assert c.is_server_live()
        for seed in range(5):
            x = _input(100 + seed)
            inp = grpcclient.InferInput("input", [1, 64], "FP32")
            inp.set_data_from_numpy(x)
            got = c.infer("digits_mlp", [inp]).as_numpy("logits")
            support.rtol_close(got, _want(tls_server, x))
    finally:
        c.close()


def test_grpc_client_with_an_untrusted_certificate_is_refused(tls_server, pki):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    for key, chain in [(pki / "stranger.key", pki / "stranger.pem"), (None, None)]:
        kw = {"private_key": str(key), "certificate_chain": str(chain)} if key else {}
        c = grpcclient.InferenceServerClient(
            f"localhost:{tls_server.grpc_port}", ssl=True, root_certificates=str(pki / "ca.pem"), **kw)
        try:
            with pytest.raises(InferenceServerException):
                c.is_server_live(client_timeout=20)
        finally:
            c.close()


def _curl(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("curl")
    assert exe, "the curl command is needed"
    return subprocess.run([exe, "-sS", "--max-time", "30", *args], capture_output=True, text=True)


def test_curl_https_infer_and_mtls_refusal(tls_server, pki):
    x = _input(7)
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                                   "data": x.ravel().tolist()}]})
    url = f"https://localhost:{tls_server.http_port}/v2/models/digits_mlp/infer"
    ok = _curl("--cacert", str(pki / "ca.pem"), "--cert", str(pki / "client.pem"),
               "--key", str(pki / "client.key"), "-d", body, "-w", "\n%{http_code} %{ssl_verify_result}", url)
    assert ok.returncode == 0, ok.stderr
    doc, status = ok.stdout.rsplit("\n", 1)
    assert status == "200 0", ok.stdout
    got = np.array(json.loads(doc)["outputs"][0]["data"], np.float32).reshape(1, 10)
    support.rtol_close(got, _want(tls_server, x))

    # TLS 1.3: the refusal of a client certificate comes as an alert after the handshake;
    # either way curl gets no HTTP answer.
    for extra in (["--cert", str(pki / "stranger.pem"), "--key", str(pki / "stranger.key")], []):
        bad = _curl("--cacert", str(pki / "ca.pem"), *extra, "-w", "%{http_code}", url, "-d", body)
        assert bad.returncode != 0, f"curl got an answer without a trusted certificate: {bad.stdout}"
        assert bad.stdout.strip() in ("", "000"), bad.stdout

    # The server's certificate is checked by the client too: another CA won't do.
    wrong_ca = _curl("--cacert", str(pki / "stranger-ca.pem"), "--cert", str(pki / "client.pem"),
                     "--key", str(pki / "client.key"), url, "-d", body)
    assert wrong_ca.returncode == 60, wrong_ca.stderr  # CURLE_PEER_FAILED_VERIFICATION
