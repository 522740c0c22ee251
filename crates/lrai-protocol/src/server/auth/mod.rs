//! Scoped bearer tokens and Triton's restricted APIs, on every route of every listener.
//!
//! One layer wraps each router (HTTP, gRPC, metrics). It looks the request up in the
//! single route table ([`routes::ROUTES`]), checks Triton's restricted-API header, then the
//! bearer token's role, and puts the [`Caller`] (and the [`Grant`] that model-scoped gRPC
//! calls check their model name against) into the request's extensions. Anything the
//! table doesn't list is refused once tokens are on. Without `--auth-file` every caller
//! is anonymous and allowed, as before.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use super::Caller;

mod grpc_layer;
mod http_layer;
mod redact;
mod reload;
mod restricted;
pub mod routes;
mod throttle;
pub mod tokens;

pub use grpc_layer::{GrpcAuth, GrpcAuthLayer, check_grpc_model};
pub use http_layer::with_auth;
pub use redact::redact_paths;
pub use reload::spawn_reloader;
pub use restricted::Restrictions;
pub use routes::{Action, Group, Listener, ROUTES, Route};
pub use throttle::Throttle;
pub use tokens::{
    Role, Token, TokenEntry, TokenFile, TokenTable, append_new_token, generate_token,
    token_digest_hex,
};

/// How the server authenticates (from `--auth-file`, `--auth-allow-health` and the
/// restricted-API flags).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The token file; `None`: no tokens, every caller anonymous.
    pub auth_file: Option<PathBuf>,
    /// Leave server liveness and readiness open (Kubernetes probes) when tokens are on.
    pub allow_health: bool,
    /// `--http-restricted-api` values.
    pub http_restricted: Vec<String>,
    /// `--grpc-restricted-api` values.
    pub grpc_restricted: Vec<String>,
}

/// The authentication state every listener shares.
#[derive(Debug)]
pub struct Auth {
    file: Option<PathBuf>,
    tokens: ArcSwap<TokenTable>,
    allow_health: bool,
    http_restricted: Restrictions,
    grpc_restricted: Restrictions,
    throttle: Throttle,
    /// Digest of the file text last seen (applied or refused): a change is acted on once.
    seen: Mutex<[u8; 32]>,
}

/// Peers whose failures are remembered at once.
const THROTTLE_PEERS: usize = 4096;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No token, or one that matches none (401 / UNAUTHENTICATED).
    Unauthenticated,
    /// A valid token without the right (403 / PERMISSION_DENIED).
    Forbidden(String),
    /// A restricted API without its header (403 / PERMISSION_DENIED, Triton's wording).
    Restricted(String),
    /// A route the table doesn't list, asked with a valid token (404 / UNIMPLEMENTED).
    NoRoute,
}

impl Denial {
    /// The HTTP status.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Denial::Unauthenticated => StatusCode::UNAUTHORIZED,
            Denial::Forbidden(_) | Denial::Restricted(_) => StatusCode::FORBIDDEN,
            Denial::NoRoute => StatusCode::NOT_FOUND,
        }
    }

    /// The message the caller sees; it names nothing internal.
    pub fn message(&self) -> String {
        match self {
            Denial::Unauthenticated => {
                "authentication required: send a valid token as 'Authorization: Bearer <token>'"
                    .into()
            }
            Denial::Forbidden(why) => why.clone(),
            Denial::Restricted(key) => {
                format!("This API is restricted, expecting header '{key}'")
            }
            Denial::NoRoute => "not found".into(),
        }
    }

    /// The gRPC status.
    pub fn grpc_status(&self) -> tonic::Status {
        match self {
            Denial::Unauthenticated => tonic::Status::unauthenticated(self.message()),
            Denial::Forbidden(_) | Denial::Restricted(_) => {
                tonic::Status::permission_denied(self.message())
            }
            Denial::NoRoute => tonic::Status::unimplemented(self.message()),
        }
    }
}

/// What an admitted request may do: who it is, and its token (to check model names).
#[derive(Debug, Clone)]
pub struct Grant {
    /// Who made the request.
    pub caller: Caller,
    token: Option<Arc<Token>>,
}

impl Grant {
    /// Refuses a model the token's patterns don't match (always allowed without tokens).
    ///
    /// # Errors
    /// [`Denial::Forbidden`] naming the token and the model.
    pub fn check_model(&self, model: &str) -> Result<(), Denial> {
        match &self.token {
            Some(t) if !t.allows_model(model) => Err(Denial::Forbidden(format!(
                "token '{}' may not use model '{model}'; its model patterns are {}",
                t.name,
                t.models.join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

/// A request as the layers see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The listener it came in on.
    pub listener: Listener,
    /// Its row of the route table (`None`: the table doesn't list it).
    pub route: Option<&'static Route>,
    /// Its headers (gRPC metadata).
    pub headers: &'a HeaderMap,
    /// The peer, when the transport knows it.
    pub peer: Option<SocketAddr>,
}

impl Auth {
    /// Reads the token file (if any) and parses the restricted-API flags.
    ///
    /// # Errors
    /// An unreadable or invalid token file, or a malformed restricted-API value.
    pub fn new(settings: &AuthSettings) -> Result<Arc<Auth>, String> {
        let http_restricted = Restrictions::parse(&settings.http_restricted)
            .map_err(|e| format!("--http-restricted-api: {e}"))?;
        let grpc_restricted = Restrictions::parse(&settings.grpc_restricted)
            .map_err(|e| format!("--grpc-restricted-api: {e}"))?;
        let (table, seen) = match &settings.auth_file {
            Some(path) => {
                let text = fs_err::read(path)
                    .map_err(|e| format!("token file: {e}; create it with `lrai token new`"))?;
                let table = parse_bytes(&text)
                    .map_err(|e| format!("token file '{}': {e}", path.display()))?;
                (table, Sha256::digest(&text).into())
            }
            None => (TokenTable::default(), [0; 32]),
        };
        Ok(Arc::new(Auth {
            file: settings.auth_file.clone(),
            tokens: ArcSwap::from_pointee(table),
            allow_health: settings.allow_health,
            http_restricted,
            grpc_restricted,
            throttle: Throttle::new(THROTTLE_PEERS),
            seen: Mutex::new(seen),
        }))
    }

    /// No tokens, no restrictions: every request is allowed.
    pub fn disabled() -> Arc<Auth> {
        // Cannot fail: no file and no restricted-API values to parse.
        Arc::new(Auth {
            file: None,
            tokens: ArcSwap::from_pointee(TokenTable::default()),
            allow_health: false,
            http_restricted: Restrictions::default(),
            grpc_restricted: Restrictions::default(),
            throttle: Throttle::new(1),
            seen: Mutex::new([0; 32]),
        })
    }

    /// True when a token file is configured (deny by default).
    pub fn tokens_on(&self) -> bool {
        self.file.is_some()
    }

    /// True when tokens or restricted APIs are configured.
    pub fn is_on(&self) -> bool {
        self.tokens_on() || !self.http_restricted.is_empty() || !self.grpc_restricted.is_empty()
    }

    /// True when nobody without credentials can reach repository control: tokens are on,
    /// or the model-repository API is restricted on both HTTP and gRPC.
    pub fn guards_admin(&self) -> bool {
        self.tokens_on()
            || (self.http_restricted.restricts(Group::ModelRepository)
                && self.grpc_restricted.restricts(Group::ModelRepository))
    }

    /// Tokens in the table now.
    pub fn token_count(&self) -> usize {
        self.tokens.load().len()
    }

    /// True when health routes stay open.
    pub fn allows_health(&self) -> bool {
        self.allow_health
    }

    /// Admits or refuses a request (without checking a model name; see [`Grant::check_model`]).
    ///
    /// # Errors
    /// The [`Denial`] to answer with.
    pub async fn authorize(&self, req: Request<'_>) -> Result<Grant, Denial> {
        let restrictions = match req.listener {
            Listener::Http => &self.http_restricted,
            Listener::Grpc => &self.grpc_restricted,
            Listener::Metrics => &Restrictions::EMPTY,
        };
        restrictions
            .check(req.route.and_then(|r| r.group), req.headers)
            .map_err(Denial::Restricted)?;
        let anonymous = Grant {
            caller: Caller::anonymous(req.peer),
            token: None,
        };
        if !self.tokens_on() {
            return Ok(anonymous);
        }
        if self.allow_health && req.route.is_some_and(|r| r.action == Action::Health) {
            return Ok(anonymous);
        }
        let presented = bearer(req.headers).ok_or(Denial::Unauthenticated)?;
        let ip = req.peer.map(|p| p.ip());
        let wait = self.throttle.delay(ip);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Some(token) = self.tokens.load().find(presented) else {
            self.throttle.failed(ip);
            tracing::info!(peer = ?req.peer, "refused an invalid bearer token");
            return Err(Denial::Unauthenticated);
        };
        let route = req.route.ok_or(Denial::NoRoute)?;
        let role = route.action.role();
        if !token.roles.contains(&role) {
            return Err(Denial::Forbidden(format!(
                "token '{}' lacks the '{}' role this request needs",
                token.name,
                role.as_str()
            )));
        }
        Ok(Grant {
            caller: Caller {
                token: Some(token.name.clone()),
                peer: req.peer,
            },
            token: Some(token),
        })
    }

    /// Re-reads the token file when its text changed. A file that fails to parse leaves
    /// the current table in place; either way the outcome is logged once per change and
    /// returned (`None`: no token file, unreadable now, or unchanged).
    pub fn reload(&self) -> Option<Result<usize, String>> {
        let Some(path) = &self.file else { return None };
        let text = match fs_err::read(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot re-read the token file; keeping the current tokens");
                return None;
            }
        };
        let digest: [u8; 32] = Sha256::digest(&text).into();
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen == digest {
                return None;
            }
            *seen = digest;
        }
        match parse_bytes(&text) {
            Ok(table) => {
                let n = table.len();
                self.tokens.store(Arc::new(table));
                tracing::info!(file = %path.display(), tokens = n, "token file reloaded");
                Some(Ok(n))
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "the new token file is invalid; keeping the current tokens");
                Some(Err(e))
            }
        }
    }

    fn reload_every(&self) -> Duration {
        Duration::from_secs(2)
    }
}

fn parse_bytes(text: &[u8]) -> Result<TokenTable, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the file is not UTF-8 text".to_string())?;
    TokenTable::parse(text)
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reload_takes_a_good_file_and_keeps_the_old_table_on_a_bad_one() {
        let dir = std::env::temp_dir().join(format!("lrai-auth-reload-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens.json");
        let _ = fs_err::remove_file(&file);
        let first = append_new_token(&file, "a", &[Role::Read], &[]).unwrap();
        let settings = AuthSettings {
            auth_file: Some(file.clone()),
            ..AuthSettings::default()
        };
        let auth = Auth::new(&settings).unwrap();
        assert_eq!(auth.token_count(), 1);
        let second = append_new_token(&file, "b", &[Role::Admin], &[]).unwrap();
        auth.reload();
        assert_eq!(auth.token_count(), 2);
        fs_err::write(&file, "{\"tokens\": [{\"name\": \"c\"}]}").unwrap();
        auth.reload();
        assert_eq!(auth.token_count(), 2);
        assert!(auth.tokens.load().find(&first).is_some());
        assert!(auth.tokens.load().find(&second).is_some());
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
        ] {
            h.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer(&h), want, "{value:?}");
        }
    }
}
