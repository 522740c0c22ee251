//! Accepting connections: the global connection cap (checked at accept, before any byte is
//! read), the TLS handshake under the header timeout, and [`Conn`], the stream the HTTP and
//! gRPC servers then read.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::tls::{Alpn, TlsReloader};

/// The connection cap shared by every listener of one server.
#[derive(Debug)]
pub struct ConnectionCap {
    slots: Arc<Semaphore>,
    max: usize,
    refused: AtomicU64,
    /// True while connections are being refused: the warning is logged once per episode.
    saturated: AtomicBool,
}

impl ConnectionCap {
    /// At most `max` connections open at once, all listeners together.
    pub fn new(max: usize) -> Arc<ConnectionCap> {
        Arc::new(ConnectionCap {
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            max,
            refused: AtomicU64::new(0),
            saturated: AtomicBool::new(false),
        })
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn admit(&self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(p) => {
                self.saturated.store(false, Ordering::Relaxed);
                Some(p)
            }
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                if !self.saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(max_connections = self.max, %peer, "connection limit reached: new connections are closed at once until some end; raise --max-connections if this load is expected");
                }
                None
            }
        }
    }
}

/// How one listener accepts.
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    /// TLS, or plain TCP when `None`.
    pub tls: Option<Arc<TlsReloader>>,
    /// The protocol offered by ALPN.
    pub alpn: Alpn,
    /// The cap shared by all listeners.
    pub cap: Arc<ConnectionCap>,
    /// Time a new connection has to finish its TLS handshake (or, without TLS, to send its
    /// first byte).
    pub handshake_timeout: Duration,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection: the stream, its addresses, and its slot under the cap (freed
/// when the connection is dropped).
pub struct Conn {
    stream: Stream,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .finish()
    }
}

impl Conn {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.peer),
        }
    }
}

/// Accepts on `listener` until `stop` turns true and hands each connection that passes the
/// cap and its handshake to the returned channel. Handshakes run in their own tasks, so a
/// slow one holds up no one else.
pub fn spawn_acceptor(
    listener: TcpListener,
    opts: AcceptOptions,
    mut stop: watch::Receiver<bool>,
) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = crate::stopped(&mut stop) => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over the cap the socket is dropped (closed) before any byte is read.
            let Some(slot) = opts.cap.admit(peer) else {
                continue;
            };
            let (opts, tx) = (opts.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(conn) = establish(tcp, peer, slot, &opts).await {
                    let _ = tx.send(conn).await;
                }
            });
        }
    });
    rx
}

async fn establish(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    opts: &AcceptOptions,
) -> Option<Conn> {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok();
    let stream = match &opts.tls {
        Some(tls) => {
            let acceptor = tls.acceptor(opts.alpn);
            match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
        None => {
            // A client that connects and sends nothing would hold its slot forever.
            let mut first = [0u8; 1];
            match tokio::time::timeout(opts.handshake_timeout, tcp.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => Stream::Plain(tcp),
                _ => {
                    tracing::debug!(%peer, "connection sent nothing in time; closed");
                    return None;
                }
            }
        }
    };
    Some(Conn {
        stream,
        local,
        peer,
        _slot: slot,
    })
}
