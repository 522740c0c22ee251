//! TLS material from PEM files: the server certificate chain, its key and, for mutual TLS,
//! the CA that client certificates must chain to. [`TlsReloader`] re-reads the files
//! periodically and swaps in a new `ServerConfig` when they change; a handshake takes the
//! config current when it starts, so connections already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// Private key of the leaf: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to (`--tls-client-ca`); `None`: no client
    /// certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files can't be used. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file can't be read.
    #[error(
        "cannot read the TLS {what} '{path}': {error}; check the path given to --{flag} and that the server may read it"
    )]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The flag that names it.
        flag: &'static str,
        /// The I/O error (in the message, not a `source`, so it is said once).
        error: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("TLS {what} '{path}' holds no {expected}: {detail}; pass a PEM file to --{flag}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What a PEM section of it should be.
        expected: &'static str,
        /// The flag that names it.
        flag: &'static str,
        /// What the parser said.
        detail: String,
    },
    /// The key is not the certificate's.
    #[error(
        "TLS key '{key}' does not belong to the certificate '{cert}' (their public keys differ); pass the private key of that certificate to --tls-key"
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the material.
    #[error("TLS {what} '{path}' was refused: {detail}")]
    Refused {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
}

/// Which application protocol a listener speaks, offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1 (the HTTP and metrics listeners).
    Http1,
    /// HTTP/2 (gRPC).
    H2,
}

/// The provider every LRAI TLS config uses: ring (no aws-lc-rs, no OpenSSL).
// rustls 0.23.48 deprecates it only to point at aws-lc-rs's post-quantum key exchange;
// LRAI builds with ring alone (no C toolchain surprises, one provider in the tree).
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// TlsError::Read names the path and the flag itself, more than fs_err would.
#[allow(clippy::disallowed_methods)]
fn read(path: &Path, what: &'static str, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_path_buf(),
        flag,
        error,
    })
}

fn certs(
    pem: &[u8],
    path: &Path,
    what: &'static str,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |detail: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        expected: "certificate (-----BEGIN CERTIFICATE-----)",
        flag,
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate section found".into()));
    }
    Ok(certs)
}

/// The raw bytes of the files, compared to notice a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Material {
    fn read(files: &TlsFiles) -> Result<Material, TlsError> {
        Ok(Material {
            cert: read(&files.cert, "certificate", "tls-cert")?,
            key: read(&files.key, "key", "tls-key")?,
            client_ca: match &files.client_ca {
                Some(p) => Some(read(p, "client CA", "tls-client-ca")?),
                None => None,
            },
        })
    }
}

/// The two configs (one per ALPN) built from one reading of the files.
#[derive(Debug)]
struct Configs {
    http1: Arc<ServerConfig>,
    h2: Arc<ServerConfig>,
}

fn client_verifier(
    pem: &[u8],
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(pem, path, "client CA", "tls-client-ca")? {
        roots.add(c).map_err(|e| TlsError::Refused {
            what: "client CA",
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Refused {
            what: "client CA",
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

fn build(files: &TlsFiles, m: &Material) -> Result<Configs, TlsError> {
    let chain = certs(&m.cert, &files.cert, "certificate", "tls-cert")?;
    let key = PrivateKeyDer::from_pem_slice(&m.key).map_err(|e| TlsError::Pem {
        what: "key",
        path: files.key.clone(),
        expected: "private key (-----BEGIN PRIVATE KEY-----, RSA or EC)",
        flag: "tls-key",
        detail: e.to_string(),
    })?;
    let provider = provider();
    let certified =
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            },
            other => TlsError::Refused {
                what: "key",
                path: files.key.clone(),
                detail: other.to_string(),
            },
        })?;
    let verifier = match (&m.client_ca, &files.client_ca) {
        (Some(pem), Some(path)) => Some(client_verifier(pem, path)?),
        _ => None,
    };
    let one = |alpn: &[u8]| -> Result<Arc<ServerConfig>, TlsError> {
        // TLS 1.2 and 1.3 are all rustls speaks; name them so no default can widen it.
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Refused {
                what: "certificate",
                path: files.cert.clone(),
                detail: e.to_string(),
            })?;
        let builder = match &verifier {
            Some(v) => builder.with_client_cert_verifier(Arc::clone(v)),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(Arc::new(Single(Arc::new(certified.clone()))));
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(cfg))
    };
    Ok(Configs {
        http1: one(b"http/1.1")?,
        h2: one(b"h2")?,
    })
}

/// Always the one certificate (what `with_single_cert` does, kept so the key can be checked
/// against the certificate first and the error name both files).
#[derive(Debug)]
struct Single(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Single {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// The current TLS configs and the files they came from.
#[derive(Debug)]
pub struct TlsReloader {
    files: TlsFiles,
    current: RwLock<Arc<Configs>>,
    /// What the files held at the last check, loaded or not: a bad file is reported once.
    seen: Mutex<Material>,
}

impl TlsReloader {
    /// Reads and checks the files.
    ///
    /// # Errors
    /// A file can't be read or parsed, or the key is not the certificate's.
    pub fn load(files: TlsFiles) -> Result<Arc<TlsReloader>, TlsError> {
        let m = Material::read(&files)?;
        let configs = build(&files, &m)?;
        Ok(Arc::new(TlsReloader {
            files,
            current: RwLock::new(Arc::new(configs)),
            seen: Mutex::new(m),
        }))
    }

    /// Whether client certificates are required.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// An acceptor with the config current now.
    pub fn acceptor(&self, alpn: Alpn) -> TlsAcceptor {
        let c = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(match alpn {
            Alpn::Http1 => &c.http1,
            Alpn::H2 => &c.h2,
        }))
    }

    /// Re-reads the files; when they changed and are good, new handshakes use them. A bad
    /// change is logged (once) and the old material stays. Returns whether it swapped.
    pub fn check(&self) -> bool {
        let m = match Material::read(&self.files) {
            Ok(m) => m,
            Err(e) => {
                // Often a rotation half done (file being replaced); the next check retries.
                tracing::debug!(error = %e, "TLS files not readable now; keeping the current certificate");
                return false;
            }
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if *seen == m {
            return false;
        }
        *seen = m.clone();
        drop(seen);
        match build(&self.files, &m) {
            Ok(c) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(c);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded; new connections use it");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "new TLS files not used; the previous certificate still serves");
                false
            }
        }
    }

    /// Checks the files every `every` until `stop` turns true.
    pub async fn watch(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let me = Arc::clone(&self);
                    // File reads and parsing are blocking work; keep them off the runtime threads.
                    let _ = tokio::task::spawn_blocking(move || me.check()).await;
                }
                () = crate::stopped(&mut stop) => return,
            }
        }
    }
}
