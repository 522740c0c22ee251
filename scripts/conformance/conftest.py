"""Session fixtures of the conformance suite: one `lrai serve` on a temporary repository
(support.build_repository), a second one with a tiny body limit, the ONNX Runtime
reference, and Triton's clients. Environment:

  LRAI_BIN                  server binary (default target/release/lrai)
  LRAI_TEST_BACKEND         --backend for the server (default auto)
  LRAI_ORT_LIB              ONNX Runtime library (default: the one of this Python's onnxruntime)
  LRAI_TEST_STARTUP_TIMEOUT seconds to wait for the models (default 180)
  LRAI_TEST_TIMEOUT         seconds per test before it is failed (default 120)
"""

from __future__ import annotations

import os
import signal

import pytest

import support

SMALL_BODY_LIMIT = 4096


def pytest_configure(config):
    config.addinivalue_line("markers", "known_bug(key): test of a known server bug (support.KNOWN_BUGS)")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("lrai-conformance")


@pytest.fixture(scope="session")
def server(workdir):
    repo = workdir / "models"
    support.build_repository(repo)
    srv = support.start_server(repo, workdir / "server.log", support.good_models())
    yield srv
    alive = srv.alive()
    rc = support.stop_server(srv)
    if not alive:
        pytest.fail(f"the server died during the tests (rc {rc}):\n{srv.log_tail()}")


@pytest.fixture(scope="session")
def small_server(workdir):
    """digits_mlp only, with --http-max-body-bytes 4096 (also the gRPC message limit)."""
    repo = workdir / "small-models"
    support.build_small_repository(repo)
    srv = support.start_server(
        repo, workdir / "small-server.log", ["digits_mlp"],
        ["--http-max-body-bytes", str(SMALL_BODY_LIMIT)],
    )
    yield srv
    support.stop_server(srv)


@pytest.fixture
def fresh_server(tmp_path):
    """A throwaway server (digits_mlp only) for tests that leave state behind."""
    repo = tmp_path / "models"
    support.build_small_repository(repo)
    srv = support.start_server(repo, tmp_path / "server.log", ["digits_mlp"])
    yield srv
    support.stop_server(srv)


@pytest.fixture(scope="session")
def reference(server):
    return support.Reference(server.repo)


@pytest.fixture(scope="session")
def http_client(server):
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(server.http_url, concurrency=8,
                                         connection_timeout=60.0, network_timeout=60.0)
    yield c
    c.close()


@pytest.fixture(scope="session")
def grpc_client(server):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _per_test_timeout(request):
    """Fails a test that runs longer than LRAI_TEST_TIMEOUT seconds (no pytest-timeout)."""
    limit = int(os.environ.get("LRAI_TEST_TIMEOUT", "120"))

    def on_alarm(signum, frame):
        raise TimeoutError(f"{request.node.nodeid} ran longer than {limit}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, append the server log's tail to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
        if srv is not None:
            rep.sections.append(("lrai serve log (tail)", srv.log_tail(25)))
