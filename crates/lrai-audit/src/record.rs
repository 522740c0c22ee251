//! What one line of the log holds: an entry (a leaf of the tree, hashed as the exact
//! bytes of its line) or a signed tree head. The format is documented in
//! `docs/security.md` (## Audit log) for independent verifiers.

use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use lrai_core::Tensor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The domain-separation prefix of the bytes a tree head signs.
pub const HEAD_CONTEXT: &[u8] = b"lrai-audit-tree-head-v1\0";

/// An admin action the log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    /// A model loaded (or reloaded) through the repository API.
    Load,
    /// A model unloaded through the repository API.
    Unload,
    /// Unversioned traffic returned to the previous version.
    Rollback,
    /// A canary, A/B or shadow rollout started.
    RolloutStart,
    /// A rollout aborted through the API.
    RolloutAbort,
    /// A rollout ended by itself: every gate passed at 100%, the candidate serves.
    RolloutPromote,
    /// A rollout ended by itself: a gate failed, the baseline serves again.
    RolloutRollback,
    /// The repository poller applied a change on disk.
    ConfigChange,
    /// The token file was re-read.
    TokenReload,
    /// The server opened the log (first entry of each run).
    ServerStart,
    /// The server closed the log on shutdown (last entry of each run).
    ServerStop,
}

/// An entry's content; `kind` tells them apart on the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Something that changed what the server serves, or who may use it.
    Admin {
        /// What was done.
        action: AdminAction,
        /// The model it was done to (empty for server-wide actions).
        model: String,
        /// Who asked: the token's name (or `anonymous`) and the peer address.
        caller: String,
        /// `ok`, or `error: <reason>` when the action was refused or failed.
        outcome: String,
    },
    /// One inference request (`--audit-inference`): never its payload, only digests.
    Inference {
        /// Who asked.
        caller: String,
        /// The model named in the request.
        model: String,
        /// The version that answered (or was asked for, when none did).
        version: String,
        /// `http` or `grpc`.
        protocol: String,
        /// `ok`, or the error class (`client_error`, `not_found`, `unavailable`,
        /// `server_error`).
        status: String,
        /// [`digest_tensors`] of the request's inputs.
        inputs_sha256: String,
        /// [`digest_tensors`] of the response's outputs (of nothing, on error).
        outputs_sha256: String,
    },
}

/// One entry: its position, when it was recorded, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 0; equals the leaf index.
    pub index: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

impl Entry {
    /// The entry's line (without the newline): these exact bytes are the leaf.
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry is plain data and always serialises")
    }
}

/// A signed statement of the tree's size and root at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Entries covered: the first `size` entries of the log.
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// MTH of the first `size` entries, hex.
    pub root: String,
    /// Ed25519 signature of [`TreeHead::signed_bytes`], hex.
    pub signature: String,
}

/// A head line: `{"head": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadLine {
    /// The head.
    pub head: TreeHead,
}

impl TreeHead {
    /// The bytes the signature covers: [`HEAD_CONTEXT`] ‖ size (u64 BE) ‖ time_ms (u64 BE)
    /// ‖ root (32 bytes).
    pub fn signed_bytes(size: u64, time_ms: u64, root: &Hash) -> Vec<u8> {
        let mut msg = Vec::with_capacity(HEAD_CONTEXT.len() + 48);
        msg.extend_from_slice(HEAD_CONTEXT);
        msg.extend_from_slice(&size.to_be_bytes());
        msg.extend_from_slice(&time_ms.to_be_bytes());
        msg.extend_from_slice(root);
        msg
    }

    /// Signs the tree of `size` entries with root `root`, now.
    pub fn sign(key: &SigningKey, size: u64, root: &Hash) -> TreeHead {
        let time_ms = now_ms();
        let sig = key.sign(&TreeHead::signed_bytes(size, time_ms, root));
        TreeHead {
            size,
            time_ms,
            root: to_hex(root),
            signature: to_hex(&sig.to_bytes()),
        }
    }

    /// The root as bytes; `None` when it isn't 64 hex digits.
    pub fn root_bytes(&self) -> Option<Hash> {
        from_hex(&self.root)?.try_into().ok()
    }

    /// True when the signature is `key`'s over this head's size, time and root.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Some(root) = self.root_bytes() else {
            return false;
        };
        let Some(sig) = from_hex(&self.signature).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
            return false;
        };
        let msg = TreeHead::signed_bytes(self.size, self.time_ms, &root);
        key.verify(&msg, &Signature::from_bytes(&sig)).is_ok()
    }

    /// The head as its own line (`{"head": {...}}`), without the newline.
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(&HeadLine { head: self.clone() })
            .expect("a head is plain data and always serialises")
    }
}

/// SHA-256 over tensors, independent of the wire encoding: for each tensor in name
/// order, the name, the KServe datatype, the rank and dims and the raw bytes, each
/// length-prefixed (u64 BE), so two different sets never hash alike by concatenation.
pub fn digest_tensors(tensors: &mut [(String, Tensor)]) -> String {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    for (name, t) in tensors.iter() {
        field(name.as_bytes());
        field(t.dtype().as_kserve().as_bytes());
        let dims: Vec<u8> = t
            .shape()
            .iter()
            .flat_map(|d| (*d as u64).to_be_bytes())
            .collect();
        field(&dims);
        field(t.data());
    }
    to_hex(&h.finalize())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Parses lowercase hex, the only spelling the log uses (so no two spellings of one head
/// exist); `None` on an odd length or any other character.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.chunks_exact(2)
        .map(|p| Some(digit(p[0])? * 16 + digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_core::DataType;

    #[test]
    fn entry_lines_are_stable_json() {
        let e = Entry {
            index: 3,
            time_ms: 17,
            event: Event::Admin {
                action: AdminAction::RolloutStart,
                model: "m".into(),
                caller: "anonymous".into(),
                outcome: "ok".into(),
            },
        };
        let line = String::from_utf8(e.to_line()).unwrap();
        assert_eq!(
            line,
            r#"{"index":3,"time_ms":17,"kind":"admin","action":"rollout_start","model":"m","caller":"anonymous","outcome":"ok"}"#
        );
        let back: Entry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn heads_verify_only_with_their_key_and_content() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let head = TreeHead::sign(&key, 5, &[1; 32]);
        assert!(head.verify(&key.verifying_key()));
        assert!(!head.verify(&other.verifying_key()));
        let mut moved = head.clone();
        moved.size = 6;
        assert!(!moved.verify(&key.verifying_key()));
        let mut bad = head;
        bad.signature.replace_range(0..2, "00");
        bad.signature.replace_range(2..4, "ff");
        assert!(!bad.verify(&key.verifying_key()));
    }

    #[test]
    fn tensor_digest_ignores_order_and_sees_every_byte() {
        let t = |v: &[f32]| {
            Tensor::new(
                DataType::F32,
                vec![1, v.len()],
                bytes::Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()),
            )
            .unwrap()
        };
        let a = digest_tensors(&mut [("a".into(), t(&[1.0])), ("b".into(), t(&[2.0]))]);
        let b = digest_tensors(&mut [("b".into(), t(&[2.0])), ("a".into(), t(&[1.0]))]);
        let c = digest_tensors(&mut [("a".into(), t(&[1.0])), ("b".into(), t(&[2.5]))]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(from_hex(&a).unwrap().len(), 32);
    }
}
