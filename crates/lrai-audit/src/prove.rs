//! Proofs from a log file, as `lrai audit prove` prints them: hashes in hex, with the
//! signed head of the tree they are against when the log has one of that size.

use std::path::Path;

use serde::Serialize;

use crate::error::AuditError;
use crate::merkle::{self, Hash};
use crate::record::{TreeHead, to_hex};
use crate::verify::read_leaves;

/// An inclusion proof (RFC 9162 §2.1.3).
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    /// The entry's index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The entry's leaf hash.
    pub leaf_hash: String,
    /// The root of the tree of `size` entries.
    pub root: String,
    /// The audit path, deepest sibling first.
    pub proof: Vec<String>,
    /// The log's signed head of this size, if it has one.
    pub head: Option<TreeHead>,
}

/// A consistency proof (RFC 9162 §2.1.4).
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    /// The older tree's size.
    pub from: u64,
    /// The newer tree's size.
    pub to: u64,
    /// The older tree's root.
    pub from_root: String,
    /// The newer tree's root.
    pub to_root: String,
    /// The proof.
    pub proof: Vec<String>,
    /// The log's signed heads of these sizes, where it has them.
    pub from_head: Option<TreeHead>,
    /// See `from_head`.
    pub to_head: Option<TreeHead>,
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| to_hex(h)).collect()
}

fn head_of(heads: &[TreeHead], size: u64) -> Option<TreeHead> {
    heads.iter().rev().find(|h| h.size == size).cloned()
}

/// Resolves a tree size: the one asked for, else the last signed head's (else the whole
/// log), checked against the log's length.
fn tree_size(leaves: &[Hash], heads: &[TreeHead], size: Option<u64>) -> Result<usize, AuditError> {
    let n = leaves.len() as u64;
    let size = size.unwrap_or_else(|| heads.last().map_or(n, |h| h.size));
    if size > n {
        return Err(AuditError::Range(format!(
            "tree size {size} is past the end of the log, which has {n} entries"
        )));
    }
    usize::try_from(size).map_err(|_| AuditError::Range(format!("tree size {size} is too large")))
}

/// The inclusion proof of entry `index` in the tree of `size` entries (default: the
/// last signed head's size).
///
/// # Errors
/// When the log can't be read, or `index`/`size` are outside it.
pub fn prove_inclusion(
    path: &Path,
    index: u64,
    size: Option<u64>,
) -> Result<InclusionProof, AuditError> {
    let (leaves, heads) = read_leaves(path)?;
    let n = tree_size(&leaves, &heads, size)?;
    let tree = &leaves[..n];
    let i = usize::try_from(index)
        .ok()
        .filter(|i| *i < n)
        .ok_or_else(|| {
            AuditError::Range(format!(
                "entry {index} is not in the tree of {n} entries; pass --size N with N > {index}"
            ))
        })?;
    let proof = merkle::inclusion_proof(tree, i).expect("index checked above");
    Ok(InclusionProof {
        index,
        size: n as u64,
        leaf_hash: to_hex(&tree[i]),
        root: to_hex(&merkle::root(tree)),
        proof: hexes(&proof),
        head: head_of(&heads, n as u64),
    })
}

/// The consistency proof from the tree of `from` entries to the tree of `to` (default:
/// the last signed head's size).
///
/// # Errors
/// When the log can't be read, or the sizes are outside it or out of order.
pub fn prove_consistency(
    path: &Path,
    from: u64,
    to: Option<u64>,
) -> Result<ConsistencyProof, AuditError> {
    let (leaves, heads) = read_leaves(path)?;
    let n = tree_size(&leaves, &heads, to)?;
    let m = usize::try_from(from)
        .ok()
        .filter(|m| *m <= n)
        .ok_or_else(|| AuditError::Range(format!("--from {from} is larger than --to {n}")))?;
    let proof = merkle::consistency_proof(&leaves[..n], m).expect("sizes checked above");
    Ok(ConsistencyProof {
        from,
        to: n as u64,
        from_root: to_hex(&merkle::root(&leaves[..m])),
        to_root: to_hex(&merkle::root(&leaves[..n])),
        proof: hexes(&proof),
        from_head: head_of(&heads, from),
        to_head: head_of(&heads, n as u64),
    })
}
