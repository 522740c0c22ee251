//! The two ways to talk to a v2 server: HTTP/1.1 (hyper, one pooled connection per
//! request in flight, `TCP_NODELAY`) with JSON or binary tensors, and gRPC (tonic, one
//! HTTP/2 channel multiplexing every request). Requests are encoded once into
//! [`Prepared`] bodies; a send clones reference-counted buffers only.

use std::str::FromStr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lrai_protocol::kserve::TensorMetadata;
use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use lrai_protocol::{InferRequest, encode_grpc_request, encode_http_request};
use serde::Deserialize;

use crate::stats::ErrorKind;
use crate::{BenchError, Result};

/// Wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// KServe v2 REST (`POST /v2/models/{m}/infer`).
    Http,
    /// `inference.GRPCInferenceService/ModelInfer`.
    Grpc,
}

impl FromStr for Protocol {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            _ => Err(BenchError::BadArg {
                flag: "--protocol",
                value: s.to_string(),
                reason: "expected http or grpc".into(),
            }),
        }
    }
}

/// How HTTP carries tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    /// Triton's binary tensor extension, for inputs and outputs.
    Binary,
    /// JSON arrays.
    Json,
}

impl FromStr for HttpFormat {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<HttpFormat> {
        match s.to_ascii_lowercase().as_str() {
            "binary" => Ok(HttpFormat::Binary),
            "json" => Ok(HttpFormat::Json),
            _ => Err(BenchError::BadArg {
                flag: "--http-format",
                value: s.to_string(),
                reason: "expected binary or json".into(),
            }),
        }
    }
}

/// The server and model under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` or `http://host:port`.
    pub url: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// HTTP only: JSON or binary tensors.
    pub http_format: HttpFormat,
    /// Model name.
    pub model: String,
    /// Model version; empty lets the server choose.
    pub version: String,
}

impl Target {
    /// The URL with a scheme and without a trailing slash.
    ///
    /// # Errors
    /// [`BenchError::BadUrl`] for `https` (not supported) or an empty URL.
    pub fn base_url(&self) -> Result<String> {
        let url = self.url.trim().trim_end_matches('/');
        if url.starts_with("https://") {
            return Err(BenchError::BadUrl {
                url: self.url.clone(),
                reason: "TLS is not supported; use http:// or host:port".into(),
            });
        }
        if url.is_empty() {
            return Err(BenchError::BadUrl {
                url: self.url.clone(),
                reason: "empty; expected host:port".into(),
            });
        }
        Ok(if url.starts_with("http://") {
            url.to_string()
        } else {
            format!("http://{url}")
        })
    }

    fn model_path(&self) -> String {
        if self.version.is_empty() {
            format!("/v2/models/{}", self.model)
        } else {
            format!("/v2/models/{}/versions/{}", self.model, self.version)
        }
    }
}

type HttpClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A plain HTTP/1.1 client with `TCP_NODELAY` (a small request must not wait for
/// Nagle's timer) and enough idle connections kept for `max_idle` requests in flight.
pub(crate) fn http_client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

/// A connected client for one target.
// One per run, never moved in a hot loop: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Client {
    Http {
        client: HttpClient,
        base: String,
        infer_uri: hyper::Uri,
        binary: bool,
    },
    Grpc {
        client: GrpcInferenceServiceClient<tonic::transport::Channel>,
        base: String,
    },
}

/// One encoded request.
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    Http {
        body: Bytes,
        header_len: Option<usize>,
    },
    Grpc(Box<pb::ModelInferRequest>),
}

impl Client {
    /// Connects (gRPC) or prepares a connection pool (HTTP, which connects lazily).
    pub(crate) async fn connect(target: &Target, max_in_flight: usize) -> Result<Client> {
        let base = target.base_url()?;
        match target.protocol {
            Protocol::Http => {
                let uri = format!("{base}{}/infer", target.model_path());
                let infer_uri =
                    uri.parse()
                        .map_err(|e: hyper::http::uri::InvalidUri| BenchError::BadUrl {
                            url: uri.clone(),
                            reason: e.to_string(),
                        })?;
                Ok(Client::Http {
                    client: http_client(max_in_flight),
                    base,
                    infer_uri,
                    binary: target.http_format == HttpFormat::Binary,
                })
            }
            Protocol::Grpc => {
                let endpoint = tonic::transport::Endpoint::from_shared(base.clone())
                    .map_err(|e| BenchError::BadUrl {
                        url: base.clone(),
                        reason: e.to_string(),
                    })?
                    .tcp_nodelay(true);
                let channel = endpoint.connect().await.map_err(|e| BenchError::Metadata {
                    model: target.model.clone(),
                    url: base.clone(),
                    reason: format!("cannot connect: {e}; is a gRPC server listening there?"),
                })?;
                let client = GrpcInferenceServiceClient::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX);
                Ok(Client::Grpc { client, base })
            }
        }
    }

    /// The model's inputs, as the server declares them.
    pub(crate) async fn inputs(&self, target: &Target) -> Result<Vec<TensorMetadata>> {
        let err = |url: &str, reason: String| BenchError::Metadata {
            model: target.model.clone(),
            url: url.to_string(),
            reason,
        };
        match self {
            Client::Http { client, base, .. } => {
                #[derive(Deserialize)]
                struct Body {
                    #[serde(default)]
                    inputs: Vec<TensorMetadata>,
                }
                let url = format!("{base}{}", target.model_path());
                let uri: hyper::Uri = url
                    .parse()
                    .map_err(|e: hyper::http::uri::InvalidUri| err(&url, e.to_string()))?;
                let req = hyper::Request::get(uri)
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| err(&url, e.to_string()))?;
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| err(&url, format!("{e}; is the server running?")))?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| err(&url, e.to_string()))?
                    .to_bytes();
                if !status.is_success() {
                    return Err(err(
                        &url,
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                    ));
                }
                let body: Body = serde_json::from_slice(&body)
                    .map_err(|e| err(&url, format!("not model metadata: {e}")))?;
                Ok(body.inputs)
            }
            Client::Grpc { client, base } => {
                let resp = client
                    .clone()
                    .model_metadata(pb::ModelMetadataRequest {
                        name: target.model.clone(),
                        version: target.version.clone(),
                    })
                    .await
                    .map_err(|s| err(base, format!("{:?}: {}", s.code(), s.message())))?;
                Ok(resp
                    .into_inner()
                    .inputs
                    .into_iter()
                    .map(|t| TensorMetadata {
                        name: t.name,
                        datatype: t.datatype,
                        shape: t.shape,
                    })
                    .collect())
            }
        }
    }

    /// Encodes a request for this client's protocol and format.
    pub(crate) fn prepare(&self, req: &InferRequest) -> Result<Prepared> {
        match self {
            Client::Http { binary, .. } => {
                let mut req = req.clone();
                req.parameters.binary_data_output = *binary;
                let (body, header_len) =
                    encode_http_request(&req, *binary).map_err(|source| BenchError::Encode {
                        model: req.model_name.clone(),
                        source,
                    })?;
                Ok(Prepared::Http { body, header_len })
            }
            Client::Grpc { .. } => Ok(Prepared::Grpc(Box::new(encode_grpc_request(req)))),
        }
    }

    /// Sends one request and reads the whole answer; `Ok` holds the model version that
    /// answered, when the response names a numeric one.
    pub(crate) async fn infer(&self, prepared: &Prepared) -> Result<Option<u64>, ErrorKind> {
        match (self, prepared) {
            (
                Client::Http {
                    client, infer_uri, ..
                },
                Prepared::Http { body, header_len },
            ) => {
                let mut req = hyper::Request::post(infer_uri.clone());
                req = match header_len {
                    Some(n) => req
                        .header("content-type", "application/octet-stream")
                        .header("inference-header-content-length", *n),
                    None => req.header("content-type", "application/json"),
                };
                let req = req
                    .body(Full::new(body.clone()))
                    .map_err(|_| ErrorKind::Transport)?;
                let resp = client
                    .request(req)
                    .await
                    .map_err(|_| ErrorKind::Transport)?;
                let status = resp.status();
                let header_len = resp
                    .headers()
                    .get("inference-header-content-length")
                    .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
                // Read the whole body: the answer is not complete before, and the
                // connection goes back to the pool only once it is drained.
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|_| ErrorKind::Transport)?
                    .to_bytes();
                if status == hyper::StatusCode::OK {
                    let head = header_len.map_or(&body[..], |n| &body[..n.min(body.len())]);
                    Ok(answered_version(head))
                } else {
                    Err(ErrorKind::Http(status.as_u16()))
                }
            }
            (Client::Grpc { client, .. }, Prepared::Grpc(req)) => {
                match client.clone().model_infer((**req).clone()).await {
                    Ok(resp) => Ok(resp.into_inner().model_version.parse().ok()),
                    Err(status) => Err(ErrorKind::Grpc(status.code() as i32)),
                }
            }
            // Prepared by the other client: cannot happen, as each run prepares with its
            // own client; answered as a transport error rather than a panic.
            (Client::Http { .. }, Prepared::Grpc(_))
            | (Client::Grpc { .. }, Prepared::Http { .. }) => Err(ErrorKind::Transport),
        }
    }
}

/// `model_version` of a KServe v2 JSON response header, when it is a number.
fn answered_version(head: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        model_version: String,
    }
    serde_json::from_slice::<Head>(head)
        .ok()?
        .model_version
        .parse()
        .ok()
}
