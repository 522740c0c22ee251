//! TLS on the listeners, through the real server on loopback: HTTPS and gRPC-over-TLS
//! inference (answers equal to the plain-HTTP answer), mutual TLS (a trusted client
//! certificate accepted, an untrusted one and none refused), TLS 1.1 refused, certificate
//! rotation without restart, and the start-up errors for bad files.
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::cast_possible_truncation
)]

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use tls_support::*;

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("lrai test CA");
        let (cert, key) = ca.leaf("server one");
        write_atomic(dir.path(), "cert.pem", &cert);
        write_atomic(dir.path(), "key.pem", &key);
        write_atomic(dir.path(), "ca.pem", &ca.cert_pem);
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

async fn start_tls(repo: &Path, pki: &Pki, mutual: bool) -> lrai::RunningServer {
    common::start(repo, |c| {
        c.listen.tls_cert = Some(pki.path("cert.pem"));
        c.listen.tls_key = Some(pki.path("key.pem"));
        c.listen.tls_client_ca = mutual.then(|| pki.path("ca.pem"));
        c.listen.tls_reload_secs = 1;
    })
    .await
}

async fn grpc_infer(ch: tonic::transport::Channel) -> Result<Vec<f32>, tonic::Status> {
    let mut c = GrpcInferenceServiceClient::new(ch);
    let data: Vec<u8> = digits_input()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let req = pb::ModelInferRequest {
        model_name: "digits_mlp".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![data.into()],
        ..Default::default()
    };
    let resp = c.model_infer(req).await?.into_inner();
    Ok(resp.raw_output_contents[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_grpc_over_tls_answer_as_plain_http_does() {
    let repo = common::standard_repo();
    let pki = Pki::new();
    let s = start_tls(repo.path(), &pki, false).await;
    let plain = common::start(repo.path(), |_| {}).await;
    let want = common::http(
        "POST",
        &format!("http://{}/v2/models/digits_mlp/infer", plain.http_addr),
        &[],
        digits_json().into_bytes(),
    )
    .await;
    assert_eq!(want.status, 200, "{}", want.text());
    let want = output_values(&want.text());
    assert_eq!(want.len(), 10);
    // JSON carries shortest round-trip decimals of the f32s: equal as f32, bit for bit.
    let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();

    let cfg = client_config(&pki.ca.der(), None, b"http/1.1");
    // Several requests on one connection, interleaved with new connections.
    let mut send = h1(connect(s.http_addr, cfg.clone()).await.unwrap()).await;
    for _ in 0..5 {
        let (st, body) = request(
            &mut send,
            "POST",
            "/v2/models/digits_mlp/infer",
            &digits_json(),
        )
        .await
        .unwrap();
        assert_eq!(st, 200, "{body}");
        assert_eq!(output_values(&body), want);
        let (st, body) = https(
            s.http_addr,
            cfg.clone(),
            "POST",
            "/v2/models/digits_mlp/infer",
            &digits_json(),
        )
        .await
        .unwrap();
        assert_eq!((st, output_values(&body)), (200, want.clone()));
    }
    let ch = grpc_channel(s.grpc_addr, client_config(&pki.ca.der(), None, b"h2"))
        .await
        .unwrap();
    for _ in 0..5 {
        let got = grpc_infer(ch.clone()).await.unwrap();
        assert_eq!(got, f32s(&want));
    }
    // The metrics listener speaks TLS too.
    let (st, body) = https(s.metrics_addr, cfg.clone(), "GET", "/metrics", "")
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert!(body.contains("nv_inference_request_success"), "{body}");
    // Plain HTTP to a TLS port gets no answer.
    let mut tcp = std::net::TcpStream::connect(s.http_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    s.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_a_trusted_client_and_refuses_others() {
    let repo = common::standard_repo();
    let pki = Pki::new();
    let s = start_tls(repo.path(), &pki, true).await;
    let trusted = pki.ca.leaf("client ci");
    let stranger_ca = Ca::new("someone else's CA");
    let untrusted = stranger_ca.leaf("client mallory");

    let ok = client_config(&pki.ca.der(), Some(&trusted), b"http/1.1");
    let (st, body) = https(
        s.http_addr,
        ok,
        "POST",
        "/v2/models/digits_mlp/infer",
        &digits_json(),
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let ch = grpc_channel(
        s.grpc_addr,
        client_config(&pki.ca.der(), Some(&trusted), b"h2"),
    )
    .await
    .unwrap();
    assert_eq!(grpc_infer(ch).await.unwrap().len(), 10);

    for id in [Some(&untrusted), None] {
        let cfg = client_config(&pki.ca.der(), id, b"http/1.1");
        let r = https(s.http_addr, cfg, "GET", "/v2/health/live", "").await;
        assert!(
            r.is_err(),
            "a client with {:?} got an answer: {r:?}",
            id.map(|_| "an untrusted certificate")
        );
        let cfg = client_config(&pki.ca.der(), id, b"h2");
        let refused = match grpc_channel(s.grpc_addr, cfg).await {
            Err(_) => true,
            Ok(ch) => grpc_infer(ch).await.is_err(),
        };
        assert!(
            refused,
            "gRPC answered a client without a trusted certificate"
        );
    }
    // The refusals took nothing down.
    let ok = client_config(&pki.ca.der(), Some(&trusted), b"http/1.1");
    assert_eq!(
        https(s.http_addr, ok, "GET", "/v2/health/live", "")
            .await
            .unwrap()
            .0,
        200
    );
    s.shutdown().await;
}

/// A TLS 1.1 ClientHello (no supported_versions extension): legacy version 3.2.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x06, 0xc0, 0x13, 0x00, 0x2f, 0x00, 0x35]); // suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00];
    hs.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_and_lower_are_refused() {
    let repo = common::standard_repo();
    let pki = Pki::new();
    let s = start_tls(repo.path(), &pki, false).await;
    for addr in [s.http_addr, s.grpc_addr, s.metrics_addr] {
        let hello = tls11_client_hello();
        let got = tokio::task::spawn_blocking(move || {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            tcp.write_all(&hello).unwrap();
            let mut buf = Vec::new();
            let _ = tcp.read_to_end(&mut buf);
            buf
        })
        .await
        .unwrap();
        // An alert record (0x15), protocol_version (70), or nothing; never a ServerHello (0x16).
        assert_ne!(
            got.first(),
            Some(&0x16),
            "the server negotiated with a TLS 1.1 client: {got:02x?}"
        );
        if !got.is_empty() {
            assert_eq!(got[0], 0x15, "{got:02x?}");
            // A fatal alert: protocol_version (70) or handshake_failure (40).
            assert_eq!(got.get(5), Some(&2), "{got:02x?}");
            assert!(
                matches!(got.get(6), Some(70 | 40)),
                "expected a refusal alert: {got:02x?}"
            );
        }
    }
    // Still serving TLS 1.2 clients.
    let mut cfg = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates({
            let mut r = rustls::RootCertStore::empty();
            r.add(pki.ca.der()).unwrap();
            r
        })
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let s12 = connect(s.http_addr, std::sync::Arc::new(cfg))
        .await
        .unwrap();
    assert_eq!(
        s12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        request(&mut h1(s12).await, "GET", "/v2/health/live", "")
            .await
            .unwrap()
            .0,
        200
    );
    s.shutdown().await;
}

/// Waits (bounded) until a new connection is served `want`.
async fn wait_for_cert(
    addr: std::net::SocketAddr,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
    want: &[u8],
) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = connect(addr, cfg.clone()).await
            && peer_cert(&s) == want
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "the new certificate was not served within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_restart_and_open_connections_keep_theirs() {
    let repo = common::standard_repo();
    let pki = Pki::new();
    let s = start_tls(repo.path(), &pki, false).await;
    let cfg = client_config(&pki.ca.der(), None, b"http/1.1");
    let first = pem_to_der(&fs_err::read_to_string(pki.path("cert.pem")).unwrap());

    let old = connect(s.http_addr, cfg.clone()).await.unwrap();
    assert_eq!(peer_cert(&old), first);
    let mut old = h1(old).await;
    assert_eq!(
        request(&mut old, "GET", "/v2/health/live", "")
            .await
            .unwrap()
            .0,
        200
    );

    // Rotate: key first, then certificate (a moment where they don't match is survived).
    let (cert2, key2) = pki.ca.leaf("server two");
    write_atomic(pki.dir.path(), "key.pem", &key2);
    write_atomic(pki.dir.path(), "cert.pem", &cert2);
    let second = pem_to_der(&cert2);
    wait_for_cert(s.http_addr, &cfg, &second).await;
    wait_for_cert(
        s.grpc_addr,
        &client_config(&pki.ca.der(), None, b"h2"),
        &second,
    )
    .await;
    // The connection opened before still works, with the certificate it started with.
    let (st, body) = request(
        &mut old,
        "POST",
        "/v2/models/digits_mlp/infer",
        &digits_json(),
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{body}");

    // A bad new certificate is refused and the current one stays.
    write_atomic(
        pki.dir.path(),
        "cert.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // two reload checks
    let now = connect(s.http_addr, cfg.clone()).await.unwrap();
    assert_eq!(peer_cert(&now), second);
    assert_eq!(
        request(&mut h1(now).await, "GET", "/v2/health/live", "")
            .await
            .unwrap()
            .0,
        200
    );
    s.shutdown().await;
}

async fn start_error(tweak: impl FnOnce(&mut lrai::config::ServeConfig)) -> String {
    let repo = common::standard_repo();
    let mut config = lrai::config::ServeConfig::for_tests(repo.path());
    tweak(&mut config);
    match lrai::serve(config).await {
        Ok(_) => panic!("the server started with bad TLS files"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_stop_the_start_with_a_clear_error() {
    let pki = Pki::new();
    let missing = pki.path("nope.pem");
    let e = start_error(|c| {
        c.listen.tls_cert = Some(missing.clone());
        c.listen.tls_key = Some(pki.path("key.pem"));
    })
    .await;
    assert!(
        e.contains("cannot read the TLS certificate")
            && e.contains("nope.pem")
            && e.contains("--tls-cert"),
        "{e}"
    );

    let (_, other_key) = pki.ca.leaf("another");
    let other = write_atomic(pki.dir.path(), "other-key.pem", &other_key);
    let e = start_error(|c| {
        c.listen.tls_cert = Some(pki.path("cert.pem"));
        c.listen.tls_key = Some(other.clone());
    })
    .await;
    assert!(
        e.contains("does not belong to the certificate") && e.contains("other-key.pem"),
        "{e}"
    );

    let e = start_error(|c| {
        c.listen.tls_cert = Some(pki.path("key.pem"));
        c.listen.tls_key = Some(pki.path("key.pem"));
    })
    .await;
    assert!(
        e.contains("holds no certificate") && e.contains("key.pem"),
        "{e}"
    );

    let e = start_error(|c| {
        c.listen.tls_cert = Some(pki.path("cert.pem"));
        c.listen.tls_key = Some(pki.path("cert.pem"));
    })
    .await;
    assert!(
        e.contains("TLS key") && e.contains("cert.pem") && e.contains("--tls-key"),
        "{e}"
    );

    let e = start_error(|c| c.listen.tls_client_ca = Some(pki.path("ca.pem"))).await;
    assert!(e.contains("--tls-cert and --tls-key"), "{e}");
}
