//! Key files. The secret key file holds the 32-byte Ed25519 seed as 64 hex digits (RFC
//! 8032's private key); the public key file holds the 32-byte public key the same way.
//! Both are plain text so any Ed25519 library (Python's `cryptography`, PyNaCl) reads
//! them; the secret one is written with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::AuditError;
use crate::record::{from_hex, to_hex};

fn read_hex32(path: &Path, what: &str) -> Result<[u8; 32], AuditError> {
    let text = fs_err::read_to_string(path).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("cannot read the {what}: {e}"),
    })?;
    from_hex(text.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| AuditError::Key {
            path: path.to_path_buf(),
            reason: format!(
                "expected the {what} as 64 hex digits (as `lrai audit keygen` writes), got {} characters",
                text.trim().len()
            ),
        })
}

/// Reads a secret key file.
///
/// # Errors
/// When the file can't be read or isn't 64 hex digits.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, AuditError> {
    Ok(SigningKey::from_bytes(&read_hex32(path, "secret key")?))
}

/// Reads a public key file.
///
/// # Errors
/// When the file can't be read, isn't 64 hex digits, or isn't a valid Ed25519 point.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let bytes = read_hex32(path, "public key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("not an Ed25519 public key: {e}"),
    })
}

/// Generates a key pair from the OS's random source and writes `path` (secret, 0600)
/// and `path.pub` (public). Never overwrites.
///
/// # Errors
/// When either file exists, can't be written, or the OS has no randomness to give.
pub fn generate(path: &Path) -> Result<(PathBuf, VerifyingKey), AuditError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("the OS random source failed: {e}"),
    })?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    write_new(path, &to_hex(&seed), 0o600)?;
    write_new(&pub_path, &to_hex(public.as_bytes()), 0o644)?;
    Ok((pub_path, public))
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), AuditError> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| AuditError::Key {
        path: path.to_path_buf(),
        reason: format!("cannot write: {e} (an existing key is never overwritten)"),
    };
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_read_back_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let (pub_path, public) = generate(&path).unwrap();
        assert_eq!(read_verifying_key(&pub_path).unwrap(), public);
        assert_eq!(read_signing_key(&path).unwrap().verifying_key(), public);
        let err = generate(&path).unwrap_err().to_string();
        assert!(err.contains("never overwritten"), "{err}");
        fs_err::write(&path, "xyz").unwrap();
        let err = read_signing_key(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
