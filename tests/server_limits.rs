//! Listener limits over real sockets: headers that never end and chunked bodies that never
//! end get their connection closed while other clients are served, the connection cap
//! closes the excess at accept and recovers, and the in-flight cap answers 503 /
//! RESOURCE_EXHAUSTED while health probes still pass.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Reads until the server closes (bounded at 30 s so a broken limit fails instead of hanging).
fn read_until_closed(mut tcp: TcpStream) -> (String, bool) {
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let closed = match tcp.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

/// One liveness request on a raw socket; false when the connection is refused or closed.
fn try_live(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = tcp.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    read_until_closed(tcp).0.starts_with("HTTP/1.1 200")
}

async fn live(addr: SocketAddr) -> u16 {
    common::get(&format!("http://{addr}/v2/health/live"))
        .await
        .status
}

async fn infer_ok(addr: SocketAddr) {
    let body = serde_json::json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [3.0]}]});
    let r = common::http(
        "POST",
        &format!("http://{addr}/v2/models/fake/infer"),
        &[],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outputs"][0]["data"][0], 6.0);
}

/// Starts a slow client with `send`, checks others are served meanwhile, and that the slow
/// one is disconnected.
async fn slow_client_is_cut_off(s: &lrai::RunningServer, send: &'static [u8]) -> String {
    let addr = s.http_addr;
    let slow = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.write_all(send).unwrap();
        read_until_closed(tcp)
    });
    for _ in 0..5 {
        infer_ok(addr).await;
    }
    let (got, closed) = slow.await.unwrap();
    assert!(closed, "the slow connection was not closed; it got {got:?}");
    assert!(
        !got.contains(" 200 "),
        "the never-ending request was answered 200: {got}"
    );
    infer_ok(addr).await;
    assert_eq!(live(addr).await, 200);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_never_end_are_cut_off() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |c| c.listen.header_timeout_secs = 1).await;
    slow_client_is_cut_off(
        &s,
        b"POST /v2/models/fake/infer HTTP/1.1\r\nhost: x\r\nx-slow: 1\r\n",
    )
    .await;
    // A connection that sends nothing at all is closed too.
    slow_client_is_cut_off(&s, b"").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_never_end_are_cut_off() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |c| c.listen.body_timeout_secs = 1).await;
    let got = slow_client_is_cut_off(
        &s,
        b"POST /v2/models/fake/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n6\r\n{\"inpu\r\n",
    )
    .await;
    assert!(
        got.starts_with("HTTP/1.1 400") && got.contains("--body-timeout-secs"),
        "{got}"
    );
    // Same with a declared length that never arrives.
    slow_client_is_cut_off(
        &s,
        b"POST /v2/models/fake/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{\"inputs\"",
    )
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_and_the_server_recovers() {
    let repo = common::standard_repo();
    let cap = 4;
    let s = common::start(repo.path(), |c| c.listen.max_connections = cap).await;
    let addr = s.http_addr;
    let held = tokio::task::spawn_blocking(move || {
        // `cap` kept-alive connections, each answered once (so each surely holds a slot).
        let mut held = Vec::new();
        for _ in 0..cap {
            let mut tcp = TcpStream::connect(addr).unwrap();
            tcp.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 512];
            tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let n = tcp.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            held.push(tcp);
        }
        // The excess: closed without an answer.
        for _ in 0..3 {
            let mut tcp = TcpStream::connect(addr).unwrap();
            let _ = tcp.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n");
            let (got, closed) = read_until_closed(tcp);
            assert!(
                closed && got.is_empty(),
                "a connection over the cap got {got:?}"
            );
        }
        held
    })
    .await
    .unwrap();
    drop(held);
    // Slots come back as the server notices the closes.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = tokio::task::spawn_blocking(move || try_live(addr))
            .await
            .unwrap();
        if ok {
            break;
        }
        assert!(
            Instant::now() < until,
            "the server did not take connections again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    infer_ok(addr).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_cap_get_503_and_resource_exhausted() {
    use lrai_protocol::pb;
    use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;

    let repo = common::standard_repo();
    let s = common::start(repo.path(), |c| c.listen.max_inflight_requests = 1).await;
    let addr = s.http_addr;
    // x = 3000: the fake model sleeps 2 s, holding the one slot.
    let slow = tokio::spawn(async move {
        let body = serde_json::json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [3000.0]}]});
        common::http(
            "POST",
            &format!("http://{addr}/v2/models/fake/infer"),
            &[],
            body.to_string().into_bytes(),
        )
        .await
    });
    // Wait until the slow one holds the slot (bounded): a second request then gets 503.
    let until = Instant::now() + Duration::from_secs(30);
    let busy = loop {
        let r = common::get(&format!("http://{addr}/v2/models/fake/ready")).await;
        if r.status == 503 {
            break r;
        }
        assert!(
            Instant::now() < until,
            "no request was refused while one was in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(busy.headers["retry-after"], "1");
    assert!(
        busy.json()["error"]
            .as_str()
            .unwrap()
            .contains("--max-inflight-requests"),
        "{}",
        busy.text()
    );
    // Probes still pass.
    assert_eq!(live(addr).await, 200);
    let mut g = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    assert!(
        g.server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let e = g
        .model_ready(pb::ModelReadyRequest {
            name: "fake".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outputs"][0]["data"][0], 6000.0);
    // The slot is free again.
    infer_ok(addr).await;
    assert!(
        g.model_ready(pb::ModelReadyRequest {
            name: "fake".into(),
            version: String::new()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
    s.shutdown().await;
}
