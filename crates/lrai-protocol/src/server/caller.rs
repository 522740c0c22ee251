//! Who made a request. The authentication layer puts a [`Caller`] into each request's
//! extensions (HTTP and gRPC); the audit log and error redaction read it. Without
//! authentication every caller is anonymous.

use std::net::SocketAddr;

/// The identity of a request's sender, as far as the server knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The name of the token that authenticated the request (`None`: no token, or auth off).
    pub token: Option<String>,
    /// The peer's address, when the transport knows it.
    pub peer: Option<SocketAddr>,
}

impl Caller {
    /// A caller known only by address.
    pub fn anonymous(peer: Option<SocketAddr>) -> Caller {
        Caller { token: None, peer }
    }

    /// True when a token authenticated this caller.
    pub fn is_authenticated(&self) -> bool {
        self.token.is_some()
    }

    /// How logs name this caller: the token's name, else `anonymous`, with the peer.
    pub fn describe(&self) -> String {
        let who = self.token.as_deref().unwrap_or("anonymous");
        match self.peer {
            Some(p) => format!("{who}@{p}"),
            None => who.to_string(),
        }
    }
}
