//! Per-request limits: the global cap on requests in flight (excess answered at once with
//! 503 / RESOURCE_EXHAUSTED, never queued) and the deadline for receiving a request body.
//! Both sit in front of the routers; the hot path pays one atomic operation and one clock
//! read per request, and a timer only when a body is still arriving.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The limits every request passes.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Requests in flight, all listeners together; `None`: unlimited (metrics).
    pub in_flight: Option<Arc<Semaphore>>,
    /// Largest number in flight, for the error message.
    pub max_in_flight: usize,
    /// Time a request has, from its headers, to deliver its whole body.
    pub body_timeout: Duration,
}

/// Health probes are never turned away: a busy server is still alive, and a failed
/// liveness probe would get it restarted.
fn exempt(path: &str) -> bool {
    path.starts_with("/v2/health/")
        || path == "/inference.GRPCInferenceService/ServerLive"
        || path == "/inference.GRPCInferenceService/ServerReady"
}

/// The outcome of the in-flight check.
pub(crate) enum Admission {
    /// Go on, holding this slot (none for exempt requests or without a cap).
    Admitted(Option<OwnedSemaphorePermit>),
    /// The cap is reached.
    Busy,
}

impl RequestLimits {
    pub(crate) fn admit(&self, path: &str) -> Admission {
        let Some(sem) = &self.in_flight else {
            return Admission::Admitted(None);
        };
        if exempt(path) {
            return Admission::Admitted(None);
        }
        match Arc::clone(sem).try_acquire_owned() {
            Ok(p) => Admission::Admitted(Some(p)),
            Err(_) => Admission::Busy,
        }
    }

    pub(crate) fn busy_message(&self) -> String {
        format!(
            "the server has {} requests in flight, its limit (--max-inflight-requests); retry later",
            self.max_in_flight
        )
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails once its deadline passes, so a body that never ends (or
    /// trickles) can't hold a connection and a request slot forever.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        deadline: Instant,
        timeout: Duration,
        // Made on the first `Pending` only: bodies that arrive with their headers (most)
        // never touch the timer wheel.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> DeadlineBody<B> {
    /// `inner` must be complete within `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            deadline: Instant::now() + timeout,
            timeout,
            sleep: None,
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?} (--body-timeout-secs)")]
pub struct BodyTimeout(Duration);

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = *this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, holding the request's in-flight slot until it answers.
    pub struct Guarded<F> {
        #[pin]
        fut: F,
        slot: Option<OwnedSemaphorePermit>,
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

impl<F> Guarded<F> {
    pub(crate) fn new(fut: F, slot: Option<OwnedSemaphorePermit>) -> Guarded<F> {
        Guarded { fut, slot }
    }
}

/// The gRPC side of the limits, as a layer for tonic's `Server::layer`.
#[derive(Debug, Clone)]
pub struct GrpcLimitsLayer(pub RequestLimits);

impl<S> tower::Layer<S> for GrpcLimitsLayer {
    type Service = GrpcLimits<S>;

    fn layer(&self, inner: S) -> GrpcLimits<S> {
        GrpcLimits {
            inner,
            limits: self.0.clone(),
        }
    }
}

/// See [`GrpcLimitsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcLimits<S> {
    inner: S,
    limits: RequestLimits,
}

/// A bidirectional stream lives as long as its client wants; only unary bodies get a deadline.
const STREAM_INFER: &str = "/inference.GRPCInferenceService/ModelStreamInfer";

type GrpcFuture<F, E> =
    futures_either::Either<Guarded<F>, std::future::Ready<Result<Response<tonic::body::Body>, E>>>;

mod futures_either {
    pin_project_lite::pin_project! {
        /// One of two futures with the same output.
        #[project = EitherProj]
        pub enum Either<L, R> {
            /// The first.
            Left { #[pin] f: L },
            /// The second.
            Right { #[pin] f: R },
        }
    }

    impl<L, R> std::future::Future for Either<L, R>
    where
        L: std::future::Future,
        R: std::future::Future<Output = L::Output>,
    {
        type Output = L::Output;

        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<L::Output> {
            match self.project() {
                EitherProj::Left { f } => f.poll(cx),
                EitherProj::Right { f } => f.poll(cx),
            }
        }
    }
}

pub(crate) use futures_either::Either;

impl<S> tower::Service<Request<tonic::body::Body>> for GrpcLimits<S>
where
    S: tower::Service<Request<tonic::body::Body>, Response = Response<tonic::body::Body>>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = GrpcFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let slot = match self.limits.admit(req.uri().path()) {
            Admission::Admitted(slot) => slot,
            Admission::Busy => {
                let status = tonic::Status::resource_exhausted(self.limits.busy_message());
                return Either::Right {
                    f: std::future::ready(Ok(status.into_http())),
                };
            }
        };
        let req = if req.uri().path() == STREAM_INFER {
            req
        } else {
            let timeout = self.limits.body_timeout;
            req.map(|b| tonic::body::Body::new(DeadlineBody::new(b, timeout)))
        };
        Either::Left {
            f: Guarded::new(self.inner.call(req), slot),
        }
    }
}

/// The HTTP answer for a request over the in-flight cap: 503 with KServe's error body.
pub(crate) fn busy_http(limits: &RequestLimits) -> Response<axum::body::Body> {
    let body = serde_json_error(&limits.busy_message());
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    resp
}

/// `{"error": msg}` for a message known to need no escaping beyond quotes.
fn serde_json_error(msg: &str) -> String {
    format!(
        "{{\"error\":\"{}\"}}",
        msg.replace('\\', "\\\\").replace('"', "\\\"")
    )
}
