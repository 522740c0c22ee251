//! Test PKI (made with rcgen at test time) and TLS clients: HTTP/1.1 over tokio-rustls with
//! hyper's client, gRPC over tokio-rustls with tonic.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// rustls needs one process-wide provider for client builders; the server picks ring itself.
pub fn install_provider() {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate authority.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `localhost` / 127.0.0.1 signed by this CA: (cert PEM, key PEM).
    pub fn leaf(&self, cn: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }
}

/// Writes `text` to `dir/name` by rename, as a rotation tool would, and returns the path.
pub fn write_atomic(dir: &Path, name: &str, text: &str) -> PathBuf {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs_err::write(&tmp, text).unwrap();
    let path = dir.join(name);
    fs_err::rename(&tmp, &path).unwrap();
    path
}

/// A client identity: (cert PEM, key PEM).
pub type Identity = (String, String);

pub fn client_config(
    ca: &CertificateDer<'static>,
    id: Option<&Identity>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match id {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// A TLS connection to `addr` as `localhost`.
pub async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The certificate the server presented on `s`.
pub fn peer_cert(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

pub fn pem_to_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// An HTTP/1.1 connection over `s`, kept open for several requests.
pub async fn h1(s: TlsStream<TcpStream>) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// One request on `send`: (status, body).
pub async fn request(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), hyper::Error> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One request on a fresh TLS connection.
pub async fn https(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let s = connect(addr, cfg).await.map_err(|e| e.to_string())?;
    let mut send = h1(s).await;
    request(&mut send, method, path, body)
        .await
        .map_err(|e| format!("{e:?}"))
}

/// A gRPC channel over TLS (ALPN h2) to `addr`.
pub async fn grpc_channel(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let connector = tower::service_fn(move |_: hyper::Uri| {
        let cfg = Arc::clone(&cfg);
        async move { connect(addr, cfg).await.map(TokioIo::new) }
    });
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
}

/// digits_mlp's input: 64 values.
pub fn digits_input() -> Vec<f32> {
    (0..64).map(|i| (i % 17) as f32 / 16.0).collect()
}

pub fn digits_json() -> String {
    serde_json::json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": digits_input()}]})
        .to_string()
}

/// The output values of a KServe v2 JSON answer.
pub fn output_values(body: &str) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["outputs"][0]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {body}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
